// The conformance client (`sdk/android/conformance`, CONTRACT §7) against a real server: the
// events, recovery and publish lines, `done` and exit 0; `fatal` and non-zero with a dead token.
package io.wsserver.client

import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotEquals
import org.junit.Assert.assertTrue
import org.junit.ClassRule
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder
import org.junit.rules.Timeout
import java.io.File
import java.util.concurrent.TimeUnit

class ConformanceTest {
    @get:Rule
    val timeout: Timeout = Timeout.seconds(60)

    @get:Rule
    val tmp = TemporaryFolder()

    private fun run(vararg args: String): Pair<Int, List<JSONObject>> {
        val script = File(ROOT, "sdk/android/conformance").path
        val proc = ProcessBuilder(listOf(script) + args).redirectError(ProcessBuilder.Redirect.DISCARD).start()
        val finished = proc.waitFor(30, TimeUnit.SECONDS)
        if (!finished) proc.destroyForcibly().waitFor()
        assertTrue("the conformance client finished", finished)
        val lines = proc.inputStream.bufferedReader().readLines().filter { it.isNotBlank() }.map { JSONObject(it) }
        return Pair(proc.exitValue(), lines)
    }

    @Test
    fun replaysPublishesAndFinishes() {
        for (i in 0 until 5) server.publish("conf.in")
        val token = tmp.newFile("token").apply { writeText(Jwt.make("conf")) }
        val (code, lines) = run(
            "--url", server.wsUrl, "--token-file", token.path, "--channel", "conf.in", "--until-seq", "5",
            "--publish-channel", "conf.out", "--publish-count", "3"
        )
        assertEquals(lines.toString(), 0, code)
        val events = lines.filter { it.has("event") }.map { it.getJSONObject("event") }
        assertEquals((1L..5L).toList(), events.map { it.getLong("seq") })
        assertEquals(setOf("conf.in"), events.map { it.getString("channel") }.toSet())
        val published = lines.filter { it.has("published") }.map { it.getJSONObject("published") }
        assertEquals(listOf(0, 1, 2), published.map { it.getInt("index") })
        assertEquals(listOf(1L, 2L, 3L), published.map { it.getLong("seq") })
        assertEquals("replay", lines.first { it.has("recovery") }.getJSONObject("recovery").getString("mode"))
        assertEquals("connecting", lines.first().getString("state"))
        assertTrue(lines.any { it.optString("state") == "connected" })
        assertTrue(lines.last().getBoolean("done"))
    }

    @Test
    fun aRejectedTokenIsFatal() {
        val token = tmp.newFile("token").apply { writeText(Jwt.make("conf", secret = "not-the-server-secret-0123456789")) }
        val (code, lines) = run("--url", server.wsUrl, "--token-file", token.path, "--channel", "conf.x", "--until-seq", "1")
        assertNotEquals(0, code)
        assertTrue(lines.toString(), lines.last().getString("fatal").startsWith("closed 4001"))
    }

    companion object {
        @ClassRule
        @JvmField
        val running = SharedServer()
        val server: TestServer get() = running.server
    }
}
