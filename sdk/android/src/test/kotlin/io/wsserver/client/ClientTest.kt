// The SDK against a real server: auth, replay then live in order, every close code's advice,
// snapshot and reset, publishes (acknowledged, refused, exactly once across a dead link), positions.
package io.wsserver.client

import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.ClassRule
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder
import org.junit.rules.Timeout
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.atomic.AtomicInteger

class ClientTest {
    @get:Rule
    val timeout: Timeout = Timeout.seconds(60)

    @get:Rule
    val tmp = TemporaryFolder()

    @Test
    fun authThenReplayThenLiveInOrderOnce() {
        val channel = "room.${user()}"
        for (i in 0 until 5) server.publish(channel, JSONObject().put("i", i))
        withClient(server.wsUrl, Tokens(user())) { client, rec ->
            client.subscribe(channel, 0L)
            val connected = rec.waitFor<Connected>()
            assertTrue(connected.userId.startsWith("k"))
            val sub = rec.waitFor<Subscribed>()
            assertEquals(Pair("replay", 5L), Pair(sub.mode, sub.replayCount))
            rec.waitFor<Live>()
            for (i in 5 until 10) server.publish(channel, JSONObject().put("i", i))
            rec.waitFor<ChannelEvent>(10)
            assertEquals((1L..10L).toList(), rec.seqs(channel))
            assertEquals((0..9).toList(), rec.of<ChannelEvent>().map { it.payload.getInt("i") })
            eventually(what = "the position to be committed") { client.position(channel) == Position(10, sub.epoch) }
            assertEquals(ConnectionState.CONNECTED, client.state)
        }
    }

    @Test
    fun reconnectingCloseCodesResumeWithoutLoss() {
        val cases = listOf(
            1001 to Reconnect.AT_ONCE, 4009 to Reconnect.AT_ONCE, 4008 to Reconnect.AT_ONCE,
            1011 to Reconnect.BACKOFF, 1013 to Reconnect.BACKOFF, 4029 to Reconnect.BACKOFF
        )
        for ((code, advice) in cases) {
            val sub = user()
            val channel = "room.$sub"
            withClient(server.wsUrl, Tokens(sub)) { client, rec ->
                client.subscribe(channel, 0L)
                rec.waitFor<Live>()
                server.publish(channel, JSONObject().put("n", 1))
                rec.waitFor<ChannelEvent>()
                assertEquals(1, server.disconnect(sub, code))
                server.publish(channel, JSONObject().put("n", 2)) // while the client is away
                val rc = rec.waitFor<Reconnecting>()
                assertEquals("close code $code: $rc", Triple(code, advice, 1), Triple(rc.code, rc.advice, rc.attempt))
                // Backoff(10, 50): "at once" draws within 10 ms, backoff within 10 ms too (attempt 0), never 0.
                assertTrue("close code $code: $rc", rc.delayMs in 1L..10L)
                assertEquals("replay", rec.waitFor<Subscribed>(2).mode)
                rec.waitFor<ChannelEvent>(2)
                assertEquals("close code $code", listOf(1L, 2L), rec.seqs(channel))
                assertEquals(2, client.stats.connects)
            }
        }
    }

    @Test
    fun neverCodesCloseForGood() {
        for (code in listOf(1000, 4003)) {
            val sub = user()
            withClient(server.wsUrl, Tokens(sub)) { client, rec ->
                rec.waitFor<Connected>()
                server.disconnect(sub, code, "bye")
                val closed = rec.waitFor<Closed>()
                assertEquals(Pair(code, "bye"), Pair(closed.code, closed.reason))
                assertEquals(ConnectionState.CLOSED, client.state)
                assertEquals(emptyList<Reconnecting>(), rec.of<Reconnecting>())
                assertEquals(1, client.stats.connects)
                assertThrows<ClientClosedException> { client.publish("room.x", "a.b", JSONObject()) }
            }
        }
    }

    @Test
    fun tokenCodesAskForANewTokenFirst() {
        for (code in listOf(4001, 4002)) {
            val sub = user()
            val tokens = Tokens(sub)
            withClient(server.wsUrl, tokens) { _, rec ->
                rec.waitFor<Connected>()
                server.disconnect(sub, code)
                val rc = rec.waitFor<Reconnecting>()
                assertEquals(Pair(code, Reconnect.NEW_TOKEN), Pair(rc.code, rc.advice))
                rec.waitFor<Connected>(2)
                assertEquals(listOf(TokenReason.CONNECT, TokenReason.REJECTED), tokens.reasons.toList())
            }
        }
    }

    @Test
    fun badTokenThenGoodOne() {
        val sub = user()
        val tokens = Tokens { reason -> if (reason == TokenReason.CONNECT) "not-a-jwt" else Jwt.make(sub) }
        withClient(server.wsUrl, tokens) { _, rec ->
            val rc = rec.waitFor<Reconnecting>()
            assertEquals(Pair(4001, Reconnect.NEW_TOKEN), Pair(rc.code, rc.advice))
            assertEquals(sub, rec.waitFor<Connected>().userId)
        }
    }

    @Test
    fun givesUpWhenTheProviderRepeatsARejectedToken() {
        val bad = Jwt.make("x", secret = "wrong".repeat(8))
        withClient(server.wsUrl, Tokens { bad }) { client, rec ->
            val closed = rec.waitFor<Closed>()
            assertEquals(4001, closed.code)
            assertTrue(closed.reason, closed.reason.contains("rejected"))
            assertEquals(1, client.stats.connects)
        }
    }

    @Test
    fun noTokenStops() {
        withClient(server.wsUrl, Tokens { null }) { client, rec ->
            assertEquals(4001, rec.waitFor<Closed>().code)
            assertEquals(0, client.stats.connects)
        }
    }

    @Test
    fun publishAcknowledgedWithSeqAndRefusedForGood() {
        val channel = "room.${user()}"
        withClient(server.wsUrl, Tokens(user())) { client, _ ->
            val results = (0 until 3).map { publishAndWait(client, channel, JSONObject().put("i", it)) }
            assertEquals(listOf(1L, 2L, 3L), results.map { (it as PublishResult).seq })
            assertEquals(listOf(0, 1, 2), server.history(channel).map { it.getJSONObject("payload").getInt("i") })
        }
        withClient(server.wsUrl, Tokens { Jwt.make(user(), publish = listOf("mine.*")) }) { client, _ ->
            val refused = publishAndWait(client, "theirs.1", JSONObject())
            assertTrue(refused is PublishRefusedException)
            assertEquals("forbidden", (refused as PublishRefusedException).code)
            assertEquals(0, client.pendingPublishes)
        }
    }

    @Test
    fun resetAndSnapshotSurfaceToTheApp() {
        val plain = "plain.${user()}"
        val snap = "snap.${user()}"
        for (channel in listOf(plain, snap)) for (i in 0 until 4) server.publish(channel, JSONObject().put("i", i))
        val (status, _) = server.api("PUT", "/api/v1/channels/$snap/snapshot",
            JSONObject().put("state", JSONObject().put("count", 2)).put("seq", 2))
        assertEquals(204, status)
        val store = MemoryPositionStore()
        withClient(server.wsUrl, Tokens(user()), positions = store) { client, rec ->
            client.subscribe(plain, 3L, "an-epoch-that-was-lost")
            client.subscribe(snap, 1L, "an-epoch-that-was-lost")
            rec.waitFor<Live>()
            val reset = rec.waitFor<Reset>()
            assertEquals(Pair(plain, 4L), Pair(reset.channel, reset.headSeq))
            val snapshot = rec.waitFor<Snapshot>()
            assertEquals(Pair(snap, 2L), Pair(snapshot.channel, snapshot.seq))
            assertEquals(2, (snapshot.state as JSONObject).getInt("count"))
            rec.waitFor<ChannelEvent>(2) { it.channel == snap }
            assertEquals(listOf(3L, 4L), rec.seqs(snap))
            assertEquals(emptyList<Long>(), rec.seqs(plain))
            eventually(what = "the reset position") { store.load(plain) == Position(4, reset.epoch) }
            server.publish(plain, JSONObject().put("i", 4))
            rec.waitFor<ChannelEvent> { it.channel == plain }
            assertEquals(listOf(5L), rec.seqs(plain))
        }
    }

    @Test
    fun filePositionStoreResumesWhereTheAppLeft() {
        val channel = "room.${user()}"
        for (i in 0 until 6) server.publish(channel, JSONObject().put("i", i))
        val file = tmp.newFile("positions.json").also { it.delete() }
        val first = FilePositionStore(file)
        withClient(server.wsUrl, Tokens(user()), positions = first) { client, rec ->
            client.subscribe(channel, 0L)
            rec.waitFor<ChannelEvent>(6)
            eventually(what = "the position committed") { client.position(channel)?.seq == 6L }
        }
        assertTrue(first.flush()) // the app's onStop
        server.publish(channel, JSONObject().put("i", 6))
        // A new process: a fresh store reads the file; its position wins over lastSeq 0.
        val second = FilePositionStore(file)
        withClient(server.wsUrl, Tokens(user()), positions = second) { client, rec ->
            client.subscribe(channel, 0L)
            rec.waitFor<ChannelEvent>()
            assertEquals(listOf(7L), rec.seqs(channel))
            assertEquals("replay", rec.waitFor<Subscribed>().mode)
            client.unsubscribe(channel)
        }
        assertTrue(second.flush())
        assertEquals(null, FilePositionStore(file).load(channel))
    }

    @Test
    fun outboxResendsAfterADeadLinkAndLandsExactlyOnce() {
        // The socket goes silent after the publish went out: the server stores it, its ack never
        // arrives; the heartbeat finds the dead link, and the resend with the same id is answered
        // with the original seq instead of a second event.
        val channel = "room.${user()}"
        val sockets = FreezableSocketFactory()
        withClient(server.wsUrl, Tokens(user()), socketFactory = sockets) { client, rec ->
            client.subscribe(channel)
            rec.waitFor<Live>()
            sockets.freezeAll()
            val answer = Answer()
            val id = client.publish(channel, "chat.msg", JSONObject().put("text", "once"), answer)
            eventually(what = "the publish to be stored") { server.history(channel).size == 1 }
            val rc = rec.waitFor<Reconnecting>()
            assertTrue(rc.reason, rc.reason.startsWith("dead link"))
            assertEquals(Reconnect.AT_ONCE, rc.advice)
            val result = answer.await() as PublishResult
            assertEquals(Pair(id, 1L), Pair(result.id, result.seq))
            assertEquals(1, client.stats.publishesResent)
            assertEquals(1, server.history(channel).size)
            // The app still gets the event itself, once, through the resubscribe.
            rec.waitFor<ChannelEvent>()
            assertEquals(listOf(1L), rec.seqs(channel))
        }
    }

    @Test
    fun listenerRunsOnTheChosenExecutorInOrder() {
        val channel = "room.${user()}"
        val threads = CopyOnWriteArrayList<String>()
        val pool = java.util.concurrent.Executors.newFixedThreadPool(4) { r -> Thread(r, "app-pool").apply { isDaemon = true } }
        val rec = Recorder()
        val listener = object : ClientListener {
            override fun onEvent(event: ClientEvent) {
                threads.add(Thread.currentThread().name)
                rec.onEvent(event)
            }
        }
        val client = WsClient(server.wsUrl, Tokens(user()), listener, WsClientOptions(deliveryExecutor = pool))
        try {
            client.subscribe(channel, 0L)
            client.start()
            rec.waitFor<Live>()
            for (i in 0 until 50) server.publish(channel)
            rec.waitFor<ChannelEvent>(50)
            assertEquals((1L..50L).toList(), rec.seqs(channel))
            assertEquals(setOf("app-pool"), threads.toSet())
        } finally {
            client.close()
            pool.shutdown()
        }
    }

    /** Receives one publish outcome. */
    class Answer : PublishCallback {
        private val outcome = java.util.concurrent.ArrayBlockingQueue<Any>(1)
        override fun onPublished(result: PublishResult) { outcome.add(result) }
        override fun onFailed(error: WsClientException) { outcome.add(error) }
        fun await(): Any = outcome.poll(WAIT_MS, java.util.concurrent.TimeUnit.MILLISECONDS)
            ?: throw AssertionError("no publish outcome in $WAIT_MS ms")
    }

    companion object {
        private val users = AtomicInteger()

        @ClassRule
        @JvmField
        val running = SharedServer()
        val server: TestServer get() = running.server

        fun user() = "k${users.incrementAndGet()}"

        fun publishAndWait(client: WsClient, channel: String, data: JSONObject): Any {
            val answer = Answer()
            client.publish(channel, "chat.msg", data, answer)
            return answer.await()
        }

        inline fun <reified E : Throwable> assertThrows(block: () -> Unit) {
            try {
                block()
            } catch (e: Throwable) {
                if (e is E) return
                throw AssertionError("expected ${E::class.java.simpleName}, got $e")
            }
            throw AssertionError("expected ${E::class.java.simpleName}, nothing thrown")
        }
    }
}
