// Publishes that outlive the process, against a real server: a child JVM queues publishes with the
// app's own ids in a FileOutboxStore and is killed (SIGKILL); a new client with the same file resends
// them and the server stores each once, one that reached the server before the kill included. The
// same app id published twice is one event with one answer; the outbox refuses beyond its size and
// fails publishes older than its TTL.
package io.wsserver.client

import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder
import org.junit.rules.Timeout
import java.io.File
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.TimeUnit

/** The child process: `url outboxFile channel count`; publishes `app-0 … app-(count-1)` and waits to be killed. */
fun main(args: Array<String>) {
    val (url, path, channel, count) = args
    val options = WsClientOptions(outbox = FileOutboxStore(File(path)), backoff = Backoff(10, 50))
    val client = WsClient(url, Tokens("outbox"), Recorder(), options)
    client.start()
    for (i in 0 until count.toInt()) client.publish(channel, "outbox.event", JSONObject().put("i", i), null, "app-$i")
    println("queued ${client.pendingPublishes}")
    System.out.flush()
    Thread.sleep(60_000)
}

class OutboxTest {
    @get:Rule
    val timeout: Timeout = Timeout.seconds(60)

    @get:Rule
    val tmp = TemporaryFolder()

    /** A URL where nothing listens: publishes stay queued. */
    private fun nowhere() = "ws://127.0.0.1:${freePort()}/ws"

    @Test
    fun publishesQueuedBeforeAKillAreResentByTheNextProcessAndStoredOnce() {
        TestServer().start().use { srv ->
            val channel = "outbox.kill"
            val file = File(tmp.root, "outbox.jsonl")
            val java = File(System.getProperty("java.home"), "bin/java").path
            val child = ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), "io.wsserver.client.OutboxTestKt",
                nowhere(), file.path, channel, "5").redirectError(ProcessBuilder.Redirect.DISCARD).start()
            try {
                val line = child.inputStream.bufferedReader().readLine()
                assertEquals("queued 5", line)
            } finally {
                child.destroyForcibly() // SIGKILL: no close(), no shutdown hook
                assertTrue(child.waitFor(10, TimeUnit.SECONDS))
            }
            // app-2 reached the server before the kill (its ack was lost): published by the same user.
            withClient(srv.wsUrl, Tokens("outbox")) { client, _ ->
                val answer = ClientTest.Answer()
                client.publish(channel, "outbox.event", JSONObject().put("i", 2), answer, "app-2")
                assertEquals(1L, (answer.await() as PublishResult).seq)
            }
            val restored = CopyOnWriteArrayList<PublishResult>()
            val options = WsClientOptions(outbox = FileOutboxStore(file), seed = 1L, restoredPublishes = object : PublishCallback {
                override fun onPublished(result: PublishResult) {
                    restored.add(result)
                }

                override fun onFailed(error: WsClientException) = throw AssertionError("restored publish failed: $error")
            })
            val client = WsClient(srv.wsUrl, Tokens("outbox"), Recorder(), options)
            try {
                assertEquals("restored from the file", 5, client.pendingPublishes)
                client.start()
                eventually(what = "5 restored publishes acknowledged") { restored.size == 5 }
                assertEquals((0..4).map { "app-$it" }, restored.map { it.id })
                assertEquals("app-2 answered with its first seq", 1L, restored.first { it.id == "app-2" }.seq)
                val stored = srv.history(channel).map { it.getJSONObject("payload").getInt("i") }
                assertEquals("each stored once", listOf(2, 0, 1, 3, 4), stored)
                eventually(what = "the outbox file emptied") { FileOutboxStore(file).load().isEmpty() }
            } finally {
                client.close()
            }
        }
    }

    @Test
    fun theSameAppIdIsOneEventWithOneAnswer() {
        TestServer().start().use { srv ->
            val channel = "outbox.same"
            withClient(srv.wsUrl, Tokens("same")) { client, rec ->
                rec.waitFor<Live>()
                val first = ClientTest.Answer()
                val joined = ClientTest.Answer()
                assertEquals("order-17", client.publish(channel, "order.placed", JSONObject().put("n", 1), first, "order-17"))
                client.publish(channel, "order.placed", JSONObject().put("n", 1), joined, "order-17") // while pending, or after
                val again = ClientTest.Answer()
                val a = first.await() as PublishResult
                assertEquals(a, joined.await())
                client.publish(channel, "order.placed", JSONObject().put("n", 1), again, "order-17") // acknowledged before
                assertEquals(a, again.await())
                assertEquals(1, srv.history(channel).size)
                assertEquals(0, client.pendingPublishes)
            }
        }
    }

    @Test
    fun theOutboxRefusesBeyondItsSizeAndFailsPublishesPastTheirTtl() {
        val outcomes = CopyOnWriteArrayList<Any>()
        val callback = object : PublishCallback {
            override fun onPublished(result: PublishResult) {
                outcomes.add(result)
            }

            override fun onFailed(error: WsClientException) {
                outcomes.add(error)
            }
        }
        val options = WsClientOptions(maxPendingPublishes = 2, publishTtlMs = 200, backoff = Backoff(10, 50), seed = 1L)
        val client = WsClient(nowhere(), Tokens("bounded"), Recorder(), options)
        try {
            client.start()
            client.publish("outbox.b", "a.b", JSONObject(), callback)
            client.publish("outbox.b", "a.b", JSONObject(), callback)
            ClientTest.assertThrows<OutboxFullException> { client.publish("outbox.b", "a.b", JSONObject(), callback) }
            Thread.sleep(300) // both are now past their TTL: the next publish finds them expired
            client.publish("outbox.b", "a.b", JSONObject(), callback)
            eventually(what = "two expiries") { outcomes.size == 2 }
            assertTrue(outcomes.toString(), outcomes.all { it is PublishExpiredException })
            assertEquals(1, client.pendingPublishes)
        } finally {
            client.close()
        }
        eventually(what = "the last one failed by close()") { outcomes.size == 3 }
        assertTrue(outcomes.toString(), outcomes.last() is ClientClosedException)
    }
}
