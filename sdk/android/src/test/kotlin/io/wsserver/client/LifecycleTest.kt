// Mobile hooks against a real server that goes away: onForeground() skips a long backoff (offline
// or not), offline is a hint that never latches, Ethernet -> Wi-Fi ends online, a network change
// probes the open link.
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
    fun onForegroundReconnectsSoonInsteadOfWaitingOutTheBackoffEvenWhenOffline() {
        TestServer().start().use { srv ->
            withClient(srv.wsUrl, Tokens("f1"), backoff = Backoff(20_000, 60_000)) { client, rec ->
                rec.waitFor<Connected>()
                srv.stop() // 1001: at once (within 250 ms), which fails (server gone), then a long full-jitter wait
                val waiting = rec.waitFor<Reconnecting>(2)
                assertTrue("a long backoff: $waiting", waiting.delayMs >= 5_000)
                client.onNetworkChanged(false) // offline is only a hint: the foreground overrides it
                srv.start()
                client.onForeground()
                rec.waitFor<Connected>(2, timeoutMs = 4_000)
            }
        }
    }

    @Test
    fun offlineIsAHintAttemptsGoOnAtTheCapAndFindTheServerBack() {
        TestServer().start().use { srv ->
            withClient(srv.wsUrl, Tokens("f2"), backoff = Backoff(10, 400)) { client, rec ->
                rec.waitFor<Connected>()
                client.onNetworkChanged(false) // e.g. a missed onAvailable: the old latch waited forever
                srv.stop()
                val rc = rec.waitFor<Reconnecting>(3)
                assertTrue("not waiting for a callback: $rc", !rc.waiting)
                assertTrue("at the cap: ${rec.of<Reconnecting>()}", rec.of<Reconnecting>().all { it.delayMs in 1L..400L })
                srv.start()
                rec.waitFor<Connected>(2, timeoutMs = 4_000) // no onNetworkChanged(true) needed
            }
        }
    }

    @Test
    fun ethernetToWifiAvailableNewThenLostOldEndsOnline() {
        TestServer().start().use { srv ->
            withClient(srv.wsUrl, Tokens("f4"), backoff = Backoff(20_000, 60_000)) { client, rec ->
                client.onNetworkAvailable("ethernet")
                rec.waitFor<Connected>()
                srv.stop()
                assertTrue(rec.waitFor<Reconnecting>(2).delayMs >= 5_000)
                srv.start()
                client.onNetworkAvailable("wifi") // Android: onAvailable(new) first ...
                client.onNetworkLost("ethernet") // ... then onLost(old)
                rec.waitFor<Connected>(2, timeoutMs = 4_000)
                // Online, not latched offline: the next "at once" close is retried within 250 ms, not at the 60 s cap.
                srv.disconnect("f4", 1001)
                val next = rec.waitFor<Reconnecting>(3)
                assertTrue("online: $next", next.delayMs in 1L..250L)
                rec.waitFor<Connected>(3)
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
