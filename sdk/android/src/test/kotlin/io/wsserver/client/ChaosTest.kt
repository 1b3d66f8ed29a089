// The SDK through the project's chaos proxy (resets, black holes, stalls, network switches):
// every HTTP-published event reaches the app exactly once and in order, every client publish is
// stored exactly once.
package io.wsserver.client

import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Rule
import org.junit.Test
import org.junit.rules.Timeout
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger

class ChaosTest {
    @get:Rule
    val timeout: Timeout = Timeout.seconds(120)

    @Test
    fun nothingLostNothingDuplicatedThroughTheChaosProxy() {
        val env = mapOf("WSSERVER_HEARTBEAT_INTERVAL" to "0.5", "WSSERVER_HEARTBEAT_TIMEOUT" to "1")
        val channels = listOf("chaos.a", "chaos.b")
        val perChannel = 100
        val clientPublishes = 20
        TestServer(env).start().use { srv ->
            ChaosProxy(
                srv.port, "--profile", "subway", "--seed", "7", "--bandwidth", "200000",
                "--reset-every", "3", "--blackhole-every", "6", "--stall-every", "4",
                "--switch-every", "8", "--switch-outage", "0.5"
            ).use { proxy ->
                val rec = Recorder()
                val options = WsClientOptions(
                    backoff = Backoff(100, 1_000), heartbeatSlackMs = 1_000, connectTimeoutMs = 3_000, seed = 7L
                )
                val client = WsClient(proxy.wsUrl, Tokens { Jwt.make("chaos") }, rec, options)
                val acked = AtomicInteger()
                val allAcked = CountDownLatch(1)
                val started = System.nanoTime()
                try {
                    for (channel in channels) client.subscribe(channel, 0L)
                    client.start()
                    fun publishFrom(index: Int) {
                        client.publish("chaos.out", "chaos.publish", JSONObject().put("index", index), object : PublishCallback {
                            override fun onPublished(result: PublishResult) {
                                acked.incrementAndGet()
                                if (index + 1 < clientPublishes) publishFrom(index + 1) else allAcked.countDown()
                            }

                            override fun onFailed(error: WsClientException) = throw AssertionError("publish $index failed: $error")
                        })
                    }
                    publishFrom(0)
                    for (i in 0 until perChannel) {
                        for (channel in channels) srv.publish(channel, JSONObject().put("i", i))
                        Thread.sleep(30)
                    }
                    for (channel in channels) {
                        rec.waitFor<ChannelEvent>(perChannel, timeoutMs = 60_000) { it.channel == channel }
                    }
                    assertTrue("client publishes acknowledged: ${acked.get()}", allAcked.await(60, TimeUnit.SECONDS))
                    val stats = client.stats
                    for (channel in channels) {
                        assertEquals("lost or duplicated on $channel", (1L..perChannel.toLong()).toList(), rec.seqs(channel))
                        assertEquals((0 until perChannel).toList(), rec.of<ChannelEvent> { it.channel == channel }.map { it.payload.getInt("i") })
                    }
                    val stored = srv.history("chaos.out").map { it.getJSONObject("payload").getInt("index") }
                    assertEquals("client publishes stored exactly once, in order", (0 until clientPublishes).toList(), stored)
                    assertTrue("the proxy disrupted the client: $stats", stats.reconnects >= 2)
                    val seconds = (System.nanoTime() - started) / 1e9
                    println(
                        "CHAOS PASS: events=${perChannel * channels.size} clientPublishes=$clientPublishes lost=0 duplicates=0 " +
                            "reconnects=${stats.reconnects} duplicatesDroppedBySdk=${stats.duplicatesDropped} gaps=${stats.gaps} " +
                            "publishesResent=${stats.publishesResent} seconds=${"%.1f".format(seconds)}"
                    )
                } finally {
                    client.close()
                }
            }
        }
    }
}
