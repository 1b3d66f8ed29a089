// Reconnect discipline against a real server that drops every link with 1001 right after auth_ok
// (POST /api/v1/disconnect every 100 ms for 6 s): the client connects a bounded number of times,
// after jittered, growing delays, never in a zero-delay loop.
package io.wsserver.client

import org.junit.Assert.assertTrue
import org.junit.Rule
import org.junit.Test
import org.junit.rules.Timeout

class DisciplineTest {
    @get:Rule
    val timeout: Timeout = Timeout.seconds(60)

    @Test
    fun aServerThatDrops1001RightAfterAuthOkSeesABoundedJitteredNumberOfConnections() {
        TestServer().start().use { srv ->
            val rec = Recorder()
            // The defaults an app gets (0.5 s doubling to 20 s, 250 ms "at once" window, 10 s stable link).
            val client = WsClient(srv.wsUrl, Tokens("storm"), rec, WsClientOptions(seed = 21L))
            try {
                client.start()
                rec.waitFor<Connected>()
                val until = System.nanoTime() + 6_000_000_000L
                while (System.nanoTime() < until) {
                    srv.disconnect("storm", 1001, "rolling restart")
                    Thread.sleep(100)
                }
                val connects = client.stats.connects
                val delays = rec.of<Reconnecting>().map { it.delayMs }
                println("DISCIPLINE: connects in 6 s of 1001 every 100 ms = $connects, delays ms = $delays")
                assertTrue("a bounded number of connections in 6 s: $connects, delays $delays", connects in 2..10)
                assertTrue("every delay drawn, none fixed: $delays", delays.toSet().size == delays.size && delays.all { it > 0 })
                val ceilings = delays.indices.map { if (it == 0) 250L else minOf(20_000L, 500L shl it) }
                assertTrue("each delay under its growing ceiling: $delays", delays.indices.all { delays[it] <= ceilings[it] })
            } finally {
                client.close()
            }
        }
    }
}
