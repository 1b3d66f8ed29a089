// Token refresh against real servers with short token_expiring leads: in-band refresh keeps the
// link, no refresh means 4002 and a new token, a refresh never outlives its link; and 1009.
package io.wsserver.client

import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Rule
import org.junit.Test
import org.junit.rules.Timeout
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicBoolean
import java.util.concurrent.atomic.AtomicInteger

class TokenTest {
    @get:Rule
    val timeout: Timeout = Timeout.seconds(60)

    @Test
    fun refreshInBandOnTokenExpiringKeepsTheConnection() {
        TestServer(mapOf("WSSERVER_TOKEN_EXPIRING_LEAD" to "1.8")).start().use { srv ->
            val tokens = Tokens { reason -> Jwt.make("r1", ttlSeconds = if (reason == TokenReason.CONNECT) 2.0 else 600.0) }
            withClient(srv.wsUrl, tokens) { client, rec ->
                client.subscribe("room.r", 0L)
                rec.waitFor<Live>()
                eventually(what = "an EXPIRING call") { TokenReason.EXPIRING in tokens.reasons }
                Thread.sleep(2_200) // past the first token's exp: a refresh that did not land would close 4002
                srv.publish("room.r")
                rec.waitFor<ChannelEvent>()
                assertEquals(emptyList<Reconnecting>(), rec.of<Reconnecting>())
                assertEquals(1, client.stats.connects)
            }
        }
    }

    @Test
    fun expiredWithoutRefreshGetsANewToken() {
        TestServer(mapOf("WSSERVER_TOKEN_EXPIRING_LEAD" to "0.5")).start().use { srv ->
            val tokens = Tokens { reason ->
                when (reason) {
                    TokenReason.EXPIRING -> null // the app cannot refresh now
                    TokenReason.CONNECT -> Jwt.make("r2", ttlSeconds = 1.5)
                    TokenReason.REJECTED -> Jwt.make("r2")
                }
            }
            withClient(srv.wsUrl, tokens) { _, rec ->
                val rc = rec.waitFor<Reconnecting>()
                assertEquals(Pair(4002, Reconnect.NEW_TOKEN), Pair(rc.code, rc.advice))
                rec.waitFor<Connected>(2)
                assertEquals(TokenReason.REJECTED, tokens.reasons.last())
            }
        }
    }

    @Test
    fun aRefreshStartedOnOneConnectionNeverReachesTheNext() {
        // The first refresh blocks until the link it belongs to has dropped; its late token is another
        // user's, so if the SDK sent it on the new connection the server would close 4003.
        val env = mapOf("WSSERVER_TOKEN_EXPIRING_LEAD" to "599.7", "WSSERVER_HEARTBEAT_INTERVAL" to "0.3")
        TestServer(env).start().use { srv ->
            val entered = CountDownLatch(1)
            val gate = CountDownLatch(1)
            val interrupted = AtomicBoolean(false)
            val expiring = AtomicInteger()
            val tokens = Tokens { reason ->
                if (reason == TokenReason.EXPIRING && expiring.incrementAndGet() == 1) {
                    entered.countDown()
                    try {
                        gate.await()
                    } catch (e: InterruptedException) {
                        interrupted.set(true)
                        throw e
                    }
                    Jwt.make("mallory")
                } else {
                    Jwt.make("r3")
                }
            }
            withClient(srv.wsUrl, tokens) { client, rec ->
                assertTrue(entered.await(WAIT_MS, TimeUnit.MILLISECONDS))
                srv.disconnect("r3", CloseCodes.SLOW_CONSUMER, "drop")
                rec.waitFor<Connected>(2)
                gate.countDown()
                eventually(what = "the new connection's own refresh") { expiring.get() >= 2 }
                Thread.sleep(500) // a stray token would be answered with 4003 within this
                assertTrue("the first refresh was cancelled with its link", interrupted.get())
                assertEquals(emptyList<Closed>(), rec.of<Closed>())
                assertEquals(ConnectionState.CONNECTED, client.state)
                assertEquals(1, rec.of<Reconnecting>().size)
            }
        }
    }

    @Test
    fun messageTooBigBacksOffAndIsNeverResent() {
        TestServer(TestServer.FAST_ENV + mapOf("WSSERVER_MAX_MESSAGE_SIZE" to "1024")).start().use { srv ->
            val first = AtomicBoolean(true)
            val tokens = Tokens { if (first.getAndSet(false)) Jwt.make("r4", extra = mapOf("pad" to "x".repeat(1200))) else Jwt.make("r4") }
            withClient(srv.wsUrl, tokens) { client, rec ->
                val rc = rec.waitFor<Reconnecting>() // the oversized auth frame
                assertEquals(Pair(1009, Reconnect.BACKOFF), Pair(rc.code, rc.advice))
                rec.waitFor<Connected>()
                ClientTest.assertThrows<MessageTooBigException> {
                    client.publish("room.big", "a.b", JSONObject().put("blob", "y".repeat(1200)))
                }
                val ok = ClientTest.publishAndWait(client, "room.big", JSONObject().put("blob", "small"))
                assertEquals(1L, (ok as PublishResult).seq)
                assertEquals(ConnectionState.CONNECTED, client.state)
            }
        }
    }
}
