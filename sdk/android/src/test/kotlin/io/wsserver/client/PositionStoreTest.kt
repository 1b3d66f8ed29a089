// FilePositionStore against a real server: a 10,000-event replay costs a handful of file writes (on
// the store's thread, coalesced), flush() persists the last position, and a store that cannot write
// (or a custom store that throws) reports the failure while delivery goes on.
package io.wsserver.client

import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder
import org.junit.rules.Timeout
import java.io.File
import java.io.IOException
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit

class PositionStoreTest {
    @get:Rule
    val timeout: Timeout = Timeout.seconds(120)

    @get:Rule
    val tmp = TemporaryFolder()

    /** A server that lets one connection pipeline 10,000 publishes. */
    private fun server() = TestServer(TestServer.FAST_ENV + mapOf(
        "WSSERVER_RATE_LIMIT_FRAMES" to "1000000", "WSSERVER_RATE_LIMIT_BYTES" to "1000000000"
    )).start()

    /** Publishes [count] events to [channel] through one SDK client (pipelined, each acknowledged). */
    private fun fill(srv: TestServer, channel: String, count: Int) {
        val done = CountDownLatch(count)
        val options = WsClientOptions(maxPendingPublishes = count, seed = 1L)
        val publisher = WsClient(srv.wsUrl, Tokens("filler"), Recorder(), options)
        try {
            publisher.start()
            val ack = object : PublishCallback {
                override fun onPublished(result: PublishResult) = done.countDown()
                override fun onFailed(error: WsClientException) = throw AssertionError("publish failed: $error")
            }
            for (i in 0 until count) publisher.publish(channel, "fill.event", JSONObject().put("i", i), ack)
            assertTrue("$count publishes acknowledged", done.await(90, TimeUnit.SECONDS))
        } finally {
            publisher.close()
        }
    }

    @Test
    fun aTenThousandEventReplayIsAFewWritesAndFlushKeepsTheLastPosition() {
        server().use { srv ->
            val channel = "replay.big"
            val events = 10_000
            fill(srv, channel, events)
            val file = File(tmp.root, "positions.json")
            val store = FilePositionStore(file) // default: at most one write per 500 ms
            withClient(srv.wsUrl, Tokens("reader"), positions = store) { client, rec ->
                client.subscribe(channel, 0L)
                val sub = rec.waitFor<Subscribed>()
                assertEquals(Pair("replay", events.toLong()), Pair(sub.mode, sub.replayCount))
                rec.waitFor<ChannelEvent>(events, timeoutMs = 60_000)
                eventually(what = "the last position committed") { client.position(channel)?.seq == events.toLong() }
                assertTrue("flush() wrote the last position", store.flush())
                val writes = store.writes
                println("POSITIONS: $events replayed events, $writes file writes")
                assertTrue("far fewer writes than events: $writes", writes in 1..events / 100)
                assertEquals(Position(events.toLong(), sub.epoch), FilePositionStore(file).load(channel))
                assertFalse(store.pending)
            }
        }
    }

    @Test
    fun aStoreThatCannotWriteReportsAndDeliveryGoesOn() {
        server().use { srv ->
            val channel = "replay.broken"
            for (i in 0 until 20) srv.publish(channel, JSONObject().put("i", i))
            // The store's directory does not exist (unmounted, deleted): every write fails.
            val storeErrors = HandlerTest.Errors()
            val broken = FilePositionStore(File(tmp.root, "gone/positions.json"), 0, storeErrors)
            val clientErrors = HandlerTest.Errors()
            val throwing = object : PositionStore {
                override fun load(channel: String): Position? = null
                override fun save(channel: String, position: Position) = throw IOException("database locked")
                override fun forget(channel: String) = Unit
            }
            for ((store, errors) in listOf(broken to storeErrors, throwing to clientErrors)) {
                val rec = Recorder()
                val options = WsClientOptions(positions = store, errorListener = clientErrors, seed = 1L)
                val client = WsClient(srv.wsUrl, Tokens("broken"), rec, options)
                try {
                    client.subscribe(channel, 0L)
                    client.start()
                    rec.waitFor<ChannelEvent>(20)
                    assertEquals((1L..20L).toList(), rec.seqs(channel))
                    eventually(what = "the position in memory") { client.position(channel)?.seq == 20L }
                    eventually(what = "a store error reported") { errors.all.isNotEmpty() }
                    assertTrue(errors.all.all { it.source == ErrorSource.POSITION_STORE })
                    assertEquals(ConnectionState.CONNECTED, client.state)
                    assertEquals(0, client.stats.redeliveries)
                } finally {
                    client.close()
                }
            }
            assertFalse("flush() reports, never throws", broken.flush())
            assertTrue(broken.pending)
            assertEquals("the store's failures are its own to report", emptyList<ClientError>(),
                clientErrors.all.filter { it.error !is IOException || it.error.message != "database locked" })
        }
    }
}
