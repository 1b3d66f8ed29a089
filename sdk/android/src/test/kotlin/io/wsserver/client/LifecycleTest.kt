// Mobile hooks against a real server that goes away: onForeground() skips a long backoff,
// onNetworkChanged(false) stops every attempt until the network is back.
package io.wsserver.client

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Rule
import org.junit.Test
import org.junit.rules.Timeout

class LifecycleTest {
    @get:Rule
    val timeout: Timeout = Timeout.seconds(60)

    @Test
    fun onForegroundReconnectsAtOnceInsteadOfWaitingOutTheBackoff() {
        TestServer().start().use { srv ->
            withClient(srv.wsUrl, Tokens("f1"), backoff = Backoff(20_000, 60_000)) { client, rec ->
                rec.waitFor<Connected>()
                srv.stop() // 1001: at once, which fails (server gone), then a long full-jitter wait
                val waiting = rec.waitFor<Reconnecting> { it.delayMs > 0 }
                assertTrue("a long backoff: $waiting", waiting.delayMs >= 5_000)
                srv.start()
                client.onForeground()
                rec.waitFor<Connected>(2, timeoutMs = 4_000)
            }
        }
    }

    @Test
    fun offlineMeansNoAttemptsUntilTheNetworkIsBack() {
        TestServer().start().use { srv ->
            withClient(srv.wsUrl, Tokens("f2")) { client, rec ->
                rec.waitFor<Connected>()
                client.onNetworkChanged(false)
                srv.stop()
                val rc = rec.waitFor<Reconnecting>()
                assertTrue("waits for the network: $rc", rc.waiting)
                srv.start()
                Thread.sleep(1_000) // the server is back, but the app said the device is offline
                assertEquals(1, rec.of<Connecting>().size)
                assertEquals(1, client.stats.connects)
                client.onNetworkChanged(true)
                rec.waitFor<Connected>(2, timeoutMs = 4_000)
            }
        }
    }

    @Test
    fun aNetworkChangeProbesTheOpenLinkAndReplacesADeadOne() {
        TestServer(mapOf("WSSERVER_HEARTBEAT_INTERVAL" to "30")).start().use { srv ->
            val sockets = FreezableSocketFactory()
            // A heartbeat far longer than the probe: only the probe can find the dead link in time.
            withClient(srv.wsUrl, Tokens("f3"), socketFactory = sockets) { client, rec ->
                rec.waitFor<Connected>()
                client.onNetworkChanged(true) // the link answers: nothing happens
                Thread.sleep(300)
                assertEquals(emptyList<Reconnecting>(), rec.of<Reconnecting>())
                sockets.freezeAll()
                client.onNetworkChanged(true)
                val rc = rec.waitFor<Reconnecting>(timeoutMs = 3_000)
                assertTrue(rc.reason, rc.reason.startsWith("dead link: no answer to the probe"))
                rec.waitFor<Connected>(2)
            }
        }
    }
}
