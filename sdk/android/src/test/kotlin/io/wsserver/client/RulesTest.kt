// The client's pure rules, table-driven with a fake clock: the reconnect pacer (stable link, "at
// once" jitter, repeated trouble, wake, offline), the lifecycle/connectivity state machine, the
// retry decision for refused requests, the outbox's bounds, the cursor's rewind, the outbox journal.
package io.wsserver.client

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder
import java.util.Collections
import java.util.Random

class RulesTest {
    @get:Rule
    val tmp = TemporaryFolder()

    private val backoff = Backoff(500, 20_000, 250)

    private fun pacer() = ReconnectPacer(backoff, stableLinkMs = 10_000, rng = Random(1))

    @Test
    fun linksThatDieRightAfterAuthOkGrowTheBackoffAndOnlyAStableLinkForgets() {
        val p = pacer()
        var now = 0L
        val delays = ArrayList<Long>()
        // 1001 a moment after every auth_ok: at once only the first time, then the ceilings grow.
        for (i in 0 until 7) {
            delays += p.linkEnded(now + 100, upSinceMs = now, advice = Reconnect.AT_ONCE, offline = false)
            now += 1_000
        }
        assertEquals(7, p.attempt)
        val ceilings = listOf(250L, 1_000, 2_000, 4_000, 8_000, 16_000, 20_000)
        for (i in delays.indices) assertTrue("draw $i: ${delays[i]} <= ${ceilings[i]}", delays[i] in 1..ceilings[i])
        assertEquals("jittered, never one fixed value", delays.size, delays.toSet().size)
        // A link that stayed up 10 s: failures forgotten, "at once" again.
        val fresh = p.linkEnded(now + 10_000, upSinceMs = now, advice = Reconnect.AT_ONCE, offline = false)
        assertTrue(fresh in 1..250)
        assertEquals(1, p.attempt)
        // A link that never authenticated is a failure, however long it took.
        p.linkEnded(now + 60_000, upSinceMs = null, advice = Reconnect.AT_ONCE, offline = false)
        assertEquals(2, p.attempt)
    }

    @Test
    fun everyAdviceDrawsJitterNeverZero() {
        val table = listOf(
            Reconnect.AT_ONCE to 250L, Reconnect.NEW_TOKEN to 250L, Reconnect.BACKOFF to 500L
        )
        for ((advice, ceiling) in table) {
            val rng = Random(7)
            val draws = (0 until 200).map { ReconnectPacer(backoff, 10_000, rng).linkEnded(0, null, advice, false) }
            assertTrue("$advice: ${Collections.min(draws)}..${Collections.max(draws)}", draws.all { it in 1..ceiling })
            assertTrue("$advice spreads", draws.toSet().size > 100)
        }
    }

    @Test
    fun troubleThatRepeatsOnOneChannelEscalatesDespiteStableLinks() {
        val p = pacer()
        var now = 0L
        val ceilings = ArrayList<Long>()
        for (i in 0 until 5) {
            // The link was up for a minute each time (stable), but the same channel keeps failing.
            val streak = p.trouble("room.1", now)
            assertEquals(i + 1, streak)
            val delay = p.linkEnded(now, upSinceMs = now - 60_000, advice = Reconnect.AT_ONCE, offline = false, streak = streak)
            ceilings += if (i == 0) 250L else backoff.ceilingMs(i)
            assertTrue("repeat $i: $delay <= ${ceilings[i]}", delay in 1..ceilings[i])
            now += 30_000
        }
        // Another channel's first trouble, or the same channel after a quiet minute, starts over.
        assertEquals(1, p.trouble("room.2", now))
        assertEquals(1, p.trouble("room.1", now + 61_000))
    }

    @Test
    fun aWakeForgetsFailuresAndRetriesSoonOfflineStaysAtTheCap() {
        val p = pacer()
        for (i in 0 until 6) p.linkEnded(i * 100L, null, Reconnect.BACKOFF, offline = false)
        assertEquals(6, p.attempt)
        val wake = p.wake()
        assertEquals(0, p.attempt)
        assertTrue("first retry soon after a wake: $wake", wake in 1..250)
        // Offline: attempts go on, every draw below the cap (not a halt, not a busy loop).
        val offline = (0 until 200).map { p.linkEnded(0, null, Reconnect.AT_ONCE, offline = true) }
        assertTrue(offline.all { it in 1..20_000 })
        assertTrue("drawn from the whole cap: ${Collections.max(offline)}", offline.any { it > 10_000 })
    }

    @Test
    fun theRetryDecisionForRefusedRequests() {
        val rng = Random(5)
        // (code, retryable) -> retried?
        val table = listOf(
            Triple("rate_limited", true, true),
            Triple("rate_limited", false, true), // an older server that forgot retryable: still retried
            Triple("unavailable", true, true),
            Triple("internal", true, true),
            Triple("some_future_code", true, true),
            Triple("forbidden", false, false),
            Triple("bad_request", false, false),
            Triple("payload_too_large", false, false)
        )
        for ((code, retryable, retried) in table) {
            val delay = backoff.retryDelayMs(code, retryable, 0, rng)
            if (retried) assertTrue("$code: $delay", delay != null && delay in 1..500) else assertNull(code, delay)
        }
        // The same jittered backoff as reconnects, growing per refusal of the same request; no fixed 1 s.
        for (tries in 0 until 8) {
            val draws = (0 until 100).map { backoff.retryDelayMs("rate_limited", true, tries, rng)!! }
            assertTrue("tries $tries", draws.all { it in 1..backoff.ceilingMs(tries) })
            assertTrue("tries $tries jittered", draws.toSet().size > 50)
        }
    }

    /** One row: inputs fed to a fresh [DeviceState], the nudges expected, and the end state. */
    private class Row(val name: String, val pause: Boolean, val inputs: List<String>, val nudges: List<Nudge>, val offline: Boolean, val paused: Boolean = false)

    private fun feed(state: DeviceState, input: String): Nudge {
        val (verb, arg) = input.split(" ").let { Pair(it[0], it.getOrNull(1)) }
        return when (verb) {
            "fg" -> state.onForeground()
            "bg" -> state.onBackground()
            "avail" -> state.onNetworkAvailable(arg!!)
            "lost" -> state.onNetworkLost(arg!!)
            "net" -> state.onNetworkChanged(arg == "true")
            "linkup" -> { state.onLinkUp(); Nudge.NONE }
            else -> throw IllegalArgumentException(input)
        }
    }

    @Test
    fun lifecycleAndConnectivityStateMachine() {
        val W = Nudge.WAKE
        val P = Nudge.PROBE
        val N = Nudge.NONE
        val rows = listOf(
            Row("not told: online", false, listOf(), listOf(), offline = false),
            Row("ethernet -> wifi: available(new) then lost(old) ends online", false,
                listOf("avail eth", "avail wifi", "lost eth"), listOf(W, W, P), offline = false),
            Row("the last network lost: offline, no action", false, listOf("avail wifi", "lost wifi"), listOf(W, N), offline = true),
            Row("network back after offline: a wake", false, listOf("avail wifi", "lost wifi", "avail lte"), listOf(W, N, W), offline = false),
            Row("a repeated onAvailable is not a wake", false, listOf("avail wifi", "avail wifi"), listOf(W, N), offline = false),
            Row("lost for a network never seen: nothing", false, listOf("avail wifi", "lost eth"), listOf(W, N), offline = false),
            Row("lost while not tracking: probe", false, listOf("lost eth"), listOf(P), offline = false),
            Row("offline is a hint foreground overrides (a wake, hint kept)", false,
                listOf("net false", "fg"), listOf(N, W), offline = true),
            Row("an authenticated link ends the offline hint", false, listOf("net false", "linkup"), listOf(N, N), offline = false),
            Row("the old latch: net(false) then net(true)", false, listOf("net false", "net true"), listOf(N, W), offline = false),
            Row("background without pause: nothing", false, listOf("bg"), listOf(N), offline = false),
            Row("pauseInBackground: paused, foreground wakes", true, listOf("bg"), listOf(Nudge.PAUSE), offline = false, paused = true),
            Row("pauseInBackground: foreground ends the pause", true, listOf("bg", "fg"), listOf(Nudge.PAUSE, W), offline = false),
            Row("offline in the background, back in the foreground", true,
                listOf("avail wifi", "bg", "lost wifi", "fg"), listOf(W, Nudge.PAUSE, N, W), offline = true)
        )
        for (row in rows) {
            val state = DeviceState(pauseInBackground = row.pause)
            val nudges = row.inputs.map { feed(state, it) }
            assertEquals(row.name, row.nudges, nudges)
            assertEquals("${row.name}: offline", row.offline, state.offline)
            assertEquals("${row.name}: paused", row.paused, state.paused)
        }
    }

    @Test
    fun outboxBoundsBySizeAndAge() {
        val outbox = Outbox(maxSize = 3, ttlMs = 1_000)
        for (i in 0 until 3) outbox.add(Pending("id$i", "{}", createdAtMs = i * 400L))
        assertTrue(outbox.full)
        assertEquals(listOf("id0", "id1"), outbox.expire(nowMs = 1_500).map { it.frameId }) // 1500 - 400 > 1000: id1 too
        assertEquals(1, outbox.size)
        assertTrue(!outbox.full)
        assertTrue(outbox.isExpired(outbox["id2"]!!, 1_801))
    }

    @Test
    fun cursorRewindForgetsWhatCameAfterSoItsRedeliveryIsNoDuplicate() {
        val cursor = ChannelCursor("c", Position(0, null))
        cursor.onSubscribed("replay", "e1", 5)
        for (seq in 1L..5L) {
            assertEquals(Verdict.DELIVER, cursor.check(seq, "e1", "id$seq"))
            cursor.commit(seq, "id$seq")
        }
        val round = cursor.round
        cursor.rewind(Position(2, "e1")) // the app failed on seq 3
        assertEquals(round + 1, cursor.round)
        assertEquals(Verdict.DUPLICATE, cursor.check(2, "e1", "id2"))
        assertEquals(Verdict.DELIVER, cursor.check(3, "e1", "id3"))
        assertEquals("{\"channel\":\"c\",\"lastSeq\":2,\"epoch\":\"e1\"}", cursor.subscribePayload().toString())
        // A snapshot the app failed on goes back to where the subscription resumed from.
        cursor.onSubscribed("snapshot", "e2", 9)
        assertEquals(Position(2, "e1"), cursor.beforeRecovery)
    }

    @Test
    fun outboxJournalSurvivesATornLineAndCompacts() {
        val file = tmp.newFile("outbox.jsonl").also { it.delete() }
        val store = FileOutboxStore(file)
        assertEquals(emptyList<StoredPublish>(), store.load())
        for (i in 0 until 200) store.add(StoredPublish("id$i", "{\"i\":$i}", i.toLong()))
        for (i in 0 until 199) store.remove("id$i")
        assertTrue("compacted: ${file.readLines().size} lines", file.readLines().size < 2 * 1 + FileOutboxStore.COMPACT_SLACK + 2)
        file.appendText("{\"add\": {\"id\": \"torn") // a kill mid-append
        val again = FileOutboxStore(file).load()
        assertEquals(listOf(StoredPublish("id199", "{\"i\":199}", 199)), again)
    }
}
