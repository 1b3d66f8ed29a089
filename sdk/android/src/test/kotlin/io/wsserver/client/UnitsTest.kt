// The pure parts: the close-code table equals the server's, backoff ceilings and jitter, the
// cursor's deliver/duplicate/gap rule, and the serial executor's order on a thread pool.
package io.wsserver.client

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.util.Random
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit

class UnitsTest {
    @Test
    fun closeCodeAdviceEqualsTheServersTable() {
        val proc = ProcessBuilder(
            PYTHON, "-c",
            "from wsserver.codes import CloseCode\nfor c in CloseCode: print(int(c), c.reconnect.value)"
        ).directory(ROOT).redirectErrorStream(true).start()
        val out = proc.inputStream.bufferedReader().readLines()
        assertTrue(proc.waitFor(30, TimeUnit.SECONDS))
        assertEquals(out.toString(), 0, proc.exitValue())
        val server = out.map { it.split(" ") }.associate { it[0].toInt() to it[1] }
        assertEquals(server, CloseCodes.ADVICE.mapValues { it.value.wire })
        assertEquals(Reconnect.AT_ONCE, CloseCodes.adviceFor(CloseCodes.ABNORMAL))
        assertEquals(Reconnect.BACKOFF, CloseCodes.adviceFor(4999))
    }

    @Test
    fun backoffIsFullJitterBelowACappedCeiling() {
        val backoff = Backoff(500, 20_000)
        assertEquals(listOf(500L, 1_000L, 2_000L, 4_000L, 8_000L, 16_000L, 20_000L, 20_000L), (0..7).map { backoff.ceilingMs(it) })
        assertEquals(20_000L, backoff.ceilingMs(1_000))
        val rng = Random(3)
        val draws = (0 until 1_000).map { backoff.delayMs(10, rng) }
        assertTrue(draws.all { it in 0L..20_000L })
        assertTrue("spread over the whole range", draws.any { it < 2_000 } && draws.any { it > 18_000 })
    }

    @Test
    fun cursorDeliversInOrderDropsDuplicatesAndFindsGaps() {
        val cursor = ChannelCursor("c", Position(0, null))
        cursor.onSubscribed("replay", "e1", 3)
        assertEquals(Verdict.DELIVER, cursor.check(1, "e1", "a"))
        cursor.commit(1, "a")
        assertEquals(Verdict.DUPLICATE, cursor.check(1, "e1", "a"))
        assertEquals(Verdict.DUPLICATE, cursor.check(2, "e1", "a")) // a known id with another seq
        assertEquals(Verdict.DUPLICATE, cursor.check(1, "e1", "z"))
        assertEquals(Verdict.GAP, cursor.check(3, "e1", "c"))
        assertEquals(Verdict.GAP, cursor.check(2, "e2", "b")) // another epoch before `subscribed` said so
        assertEquals("{\"channel\":\"c\",\"lastSeq\":1,\"epoch\":\"e1\"}", cursor.subscribePayload().toString())
        cursor.onSubscribed("snapshot", "e2", 9)
        assertEquals(Verdict.GAP, cursor.check(8, "e2", "x")) // nothing before the snapshot frame
        cursor.onSnapshot(7, "e2")
        assertEquals(Verdict.DELIVER, cursor.check(8, "e2", "x"))
        cursor.onSubscribed("reset", "e3", 20)
        assertEquals(Position(20, "e3"), cursor.position)
        assertEquals("{\"channel\":\"live\"}", ChannelCursor("live", null).subscribePayload().toString())
    }

    @Test
    fun serialExecutorKeepsOrderOnAPool() {
        val pool = Executors.newFixedThreadPool(4)
        val serial = SerialExecutor(pool)
        val seen = CopyOnWriteArrayList<Int>()
        val done = CountDownLatch(500)
        for (i in 0 until 500) serial.execute(Runnable { seen.add(i); done.countDown() })
        assertTrue(done.await(10, TimeUnit.SECONDS))
        pool.shutdown()
        assertEquals((0 until 500).toList(), seen.toList())
    }
}
