// App callbacks that throw, against a real server: a listener that throws (an IOException, TODO(),
// an Error subclass) on seq N gets N again and the stored position never skips it; a snapshot is
// redelivered the same way; state and publish callbacks that throw, and a token provider that
// throws an Error, never stop the client. Every failure reaches the error listener.
package io.wsserver.client

import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.ClassRule
import org.junit.Rule
import org.junit.Test
import org.junit.rules.Timeout
import java.io.IOException
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.atomic.AtomicInteger

class HandlerTest {
    @get:Rule
    val timeout: Timeout = Timeout.seconds(60)

    /** An app-defined Error subclass (not fatal to the JVM). */
    class AppError(message: String) : Error(message)

    /** Records every save on top of the in-memory store. */
    class RecordingStore : PositionStore {
        private val inner = MemoryPositionStore()
        val saved = CopyOnWriteArrayList<Long>()
        override fun load(channel: String): Position? = inner.load(channel)
        override fun save(channel: String, position: Position) {
            saved.add(position.seq)
            inner.save(channel, position)
        }
        override fun forget(channel: String) = inner.forget(channel)
    }

    class Errors : ErrorListener {
        val all = CopyOnWriteArrayList<ClientError>()
        override fun onError(error: ClientError) {
            all.add(error)
        }
    }

    private fun client(sub: String, listener: ClientListener, errors: Errors, store: PositionStore = MemoryPositionStore(), tokens: TokenProvider = Tokens(sub)) =
        WsClient(server.wsUrl, tokens, listener, WsClientOptions(
            positions = store, backoff = Backoff(10, 50), heartbeatSlackMs = 500, connectTimeoutMs = 5_000, seed = 3L,
            errorListener = errors
        ))

    @Test
    fun aListenerThatThrowsOnSeqNGetsNAgainAndThePositionNeverSkipsIt() {
        val throwables = listOf<() -> Throwable>(
            { IOException("disk full") }, { NotImplementedError("TODO()") }, { AppError("app bug") }, { IllegalStateException("state") }
        )
        for (make in throwables) {
            val sub = user()
            val channel = "room.$sub"
            for (i in 1..8) server.publish(channel, JSONObject().put("i", i))
            val rec = Recorder()
            val attempts = CopyOnWriteArrayList<Long>()
            var thrown: Throwable? = null
            val listener = object : ClientListener {
                override fun onEvent(event: ClientEvent) {
                    if (event is ChannelEvent) {
                        attempts.add(event.seq)
                        if (event.seq == 4L && thrown == null) throw make().also { thrown = it }
                    }
                    rec.onEvent(event)
                }
            }
            val store = RecordingStore()
            val errors = Errors()
            val client = client(sub, listener, errors, store)
            try {
                client.subscribe(channel, 0L)
                client.start()
                rec.waitFor<ChannelEvent>(8)
                assertEquals("$thrown: delivered once each, in order", (1L..8L).toList(), rec.seqs(channel))
                assertEquals("$thrown: seq 4 twice (skipped events come again after it)", listOf(1L, 2L, 3L, 4L), attempts.take(4))
                assertEquals("$thrown", (4L..8L).toList(), attempts.drop(4))
                eventually(what = "position 8 saved") { store.saved.lastOrNull() == 8L }
                assertEquals("$thrown: the stored position never skipped seq 4", (1L..8L).toList(), store.saved.toList())
                val reported = errors.all.single()
                assertEquals(Triple(ErrorSource.LISTENER, channel, 4L), Triple(reported.source, reported.channel, reported.seq))
                assertTrue(reported.error === thrown)
                assertEquals(1, client.stats.redeliveries)
                assertEquals(ConnectionState.CONNECTED, client.state)
            } finally {
                client.close()
            }
        }
    }

    @Test
    fun aSnapshotHandlerThatThrowsGetsTheSnapshotAgain() {
        val sub = user()
        val channel = "snap.$sub"
        for (i in 0 until 4) server.publish(channel, JSONObject().put("i", i))
        val (status, _) = server.api("PUT", "/api/v1/channels/$channel/snapshot",
            JSONObject().put("state", JSONObject().put("count", 2)).put("seq", 2))
        assertEquals(204, status)
        val rec = Recorder()
        val snapshots = AtomicInteger()
        val listener = object : ClientListener {
            override fun onEvent(event: ClientEvent) {
                if (event is Snapshot && snapshots.incrementAndGet() == 1) throw IOException("cannot apply the snapshot now")
                rec.onEvent(event)
            }
        }
        val store = RecordingStore()
        val errors = Errors()
        val client = client(sub, listener, errors, store)
        try {
            client.subscribe(channel, 1L, "an-epoch-that-was-lost")
            client.start()
            rec.waitFor<ChannelEvent>(2)
            assertEquals(2, snapshots.get())
            assertEquals(listOf(3L, 4L), rec.seqs(channel))
            eventually(what = "position 4 saved") { store.saved.lastOrNull() == 4L }
            assertEquals("nothing saved for the failed snapshot", listOf(2L, 3L, 4L), store.saved.toList())
            assertEquals(ErrorSource.LISTENER, errors.all.single().source)
        } finally {
            client.close()
        }
    }

    @Test
    fun stateAndPublishCallbacksThatThrowNeverStopDelivery() {
        val sub = user()
        val channel = "room.$sub"
        val rec = Recorder()
        val listener = object : ClientListener {
            override fun onEvent(event: ClientEvent) {
                rec.onEvent(event)
                if (event is Connected) throw AppError("connected handler")
                if (event is Live) TODO("live banner")
            }
        }
        val errors = Errors()
        val client = client(sub, listener, errors)
        try {
            client.subscribe(channel)
            client.start()
            rec.waitFor<Live>()
            val after = ClientTest.Answer()
            client.publish(channel, "chat.msg", JSONObject(), object : PublishCallback {
                override fun onPublished(result: PublishResult) = throw IOException("callback failed")
                override fun onFailed(error: WsClientException) = Unit
            })
            client.publish(channel, "chat.msg", JSONObject(), after)
            assertEquals(2L, (after.await() as PublishResult).seq)
            rec.waitFor<ChannelEvent>(2)
            assertEquals(listOf(1L, 2L), rec.seqs(channel))
            eventually(what = "three reports") { errors.all.size == 3 }
            assertEquals(
                listOf(ErrorSource.LISTENER, ErrorSource.LISTENER, ErrorSource.PUBLISH_CALLBACK),
                errors.all.map { it.source }.sorted()
            )
            assertEquals("state callbacks are not redelivered", 0, client.stats.redeliveries)
            assertEquals(1, client.stats.connects)
        } finally {
            client.close()
        }
    }

    @Test
    fun aTokenProviderThatThrowsAnErrorIsRetried() {
        val sub = user()
        val calls = AtomicInteger()
        val tokens = Tokens { if (calls.incrementAndGet() == 1) TODO("token backend not ready") else Jwt.make(sub) }
        val errors = Errors()
        val rec = Recorder()
        val client = client(sub, rec, errors, tokens = tokens)
        try {
            client.start()
            rec.waitFor<Connected>()
            assertEquals(ErrorSource.TOKEN_PROVIDER, errors.all.single().source)
            assertTrue(errors.all.single().error is NotImplementedError)
            assertEquals(1, rec.of<Reconnecting>().size)
        } finally {
            client.close()
        }
    }

    companion object {
        private val users = AtomicInteger()

        @ClassRule
        @JvmField
        val running = SharedServer()
        val server: TestServer get() = running.server

        fun user() = "h${users.incrementAndGet()}"
    }
}
