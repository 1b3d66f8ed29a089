// Test support: a real `wsserver serve` subprocess on free ports (and the chaos proxy), HS256
// tokens minted here, a recorder of client events with waits, and a socket that can go silent.
package io.wsserver.client

import org.json.JSONObject
import java.io.File
import java.io.FilterInputStream
import java.io.IOException
import java.io.InputStream
import java.net.HttpURLConnection
import java.net.InetAddress
import java.net.ServerSocket
import java.net.Socket
import java.net.SocketException
import java.net.URL
import java.nio.file.Files
import java.util.Base64
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.TimeUnit
import java.util.concurrent.locks.ReentrantLock
import javax.crypto.Mac
import javax.crypto.spec.SecretKeySpec
import javax.net.SocketFactory
import kotlin.concurrent.withLock

/** Absolute limit of any single wait in these tests. */
const val WAIT_MS = 10_000L

val ROOT: File = File(System.getProperty("wsserver.root") ?: "../..").absoluteFile
val PYTHON: String = System.getProperty("wsserver.python") ?: File(ROOT, ".venv/bin/python").path

fun freePort(): Int = ServerSocket(0, 50, InetAddress.getByName("127.0.0.1")).use { it.localPort }

/** Polls [check] every 20 ms until it holds or [timeoutMs] passed. */
fun eventually(timeoutMs: Long = WAIT_MS, what: String = "condition", check: () -> Boolean) {
    val deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs)
    while (!check()) {
        if (System.nanoTime() > deadline) throw AssertionError("timed out after $timeoutMs ms waiting for $what")
        Thread.sleep(20)
    }
}

/** HS256 JWTs signed with the test server's secret (javax.crypto, no JWT library). */
object Jwt {
    const val SECRET = "android-sdk-test-secret-0123456789abcdef"
    private val b64 = Base64.getUrlEncoder().withoutPadding()

    fun make(
        sub: String,
        ttlSeconds: Double = 600.0,
        channels: List<String> = listOf("*"),
        publish: List<String> = listOf("*"),
        secret: String = SECRET,
        extra: Map<String, Any> = emptyMap()
    ): String {
        val claims = JSONObject().put("sub", sub).put("jti", java.util.UUID.randomUUID().toString())
            .put("exp", (System.currentTimeMillis() / 1000.0 + ttlSeconds).toLong())
            .put("channels", org.json.JSONArray(channels)).put("publish", org.json.JSONArray(publish))
        for ((k, v) in extra) claims.put(k, v)
        val head = b64.encodeToString("""{"alg":"HS256","typ":"JWT"}""".toByteArray())
        val body = b64.encodeToString(claims.toString().toByteArray())
        val mac = Mac.getInstance("HmacSHA256")
        mac.init(SecretKeySpec(secret.toByteArray(), "HmacSHA256"))
        val sig = b64.encodeToString(mac.doFinal("$head.$body".toByteArray()))
        return "$head.$body.$sig"
    }
}

/** A token provider that records why it was asked. */
open class Tokens(private val mint: (TokenReason) -> String?) : TokenProvider {
    constructor(sub: String) : this({ _: TokenReason -> Jwt.make(sub) })

    val reasons = CopyOnWriteArrayList<TokenReason>()

    override fun token(reason: TokenReason): String? {
        reasons.add(reason)
        return mint(reason)
    }
}

/** `python -m wsserver serve` on free ports with its own data directory; [restart] keeps both. */
class TestServer(private val env: Map<String, String> = FAST_ENV) : java.io.Closeable {
    val port = freePort()
    val apiPort = freePort()
    val dataDir: File = Files.createTempDirectory("wsserver-android").toFile()
    private val logFile = File(dataDir.parentFile, "${dataDir.name}.log")
    private var process: Process? = null

    val wsUrl get() = "ws://127.0.0.1:$port/ws"

    fun start(): TestServer {
        val pb = ProcessBuilder(PYTHON, "-m", "wsserver", "serve").directory(ROOT)
        pb.environment().putAll(mapOf(
            "WSSERVER_HOST" to "127.0.0.1", "WSSERVER_PORT" to "$port",
            "WSSERVER_API_HOST" to "127.0.0.1", "WSSERVER_API_PORT" to "$apiPort",
            "WSSERVER_API_KEY" to API_KEY, "WSSERVER_JWT_SECRET" to Jwt.SECRET,
            "WSSERVER_DATA_DIR" to File(dataDir, "data").path
        ))
        pb.environment().putAll(env)
        pb.redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(logFile))
        val proc = pb.start()
        process = proc
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20)
        while (true) {
            if (!proc.isAlive) throw IllegalStateException("server exited with ${proc.exitValue()}:\n${log()}")
            if (healthy()) return this
            if (System.nanoTime() > deadline) throw IllegalStateException("server not healthy in 20 s:\n${log()}")
            Thread.sleep(50)
        }
    }

    private fun healthy(): Boolean = try {
        val conn = URL("http://127.0.0.1:$apiPort/healthz").openConnection() as HttpURLConnection
        conn.connectTimeout = 500
        conn.readTimeout = 1000
        try { conn.responseCode == 200 } finally { conn.disconnect() }
    } catch (e: IOException) {
        false
    }

    fun log(): String = if (logFile.exists()) logFile.readText() else ""

    /** SIGTERM (the server closes every client with 1001), then waits for the exit. */
    fun stop() {
        val proc = process ?: return
        proc.destroy()
        if (!proc.waitFor(15, TimeUnit.SECONDS)) {
            proc.destroyForcibly().waitFor()
        }
        process = null
    }

    fun restart(): TestServer {
        stop()
        return start()
    }

    override fun close() {
        stop()
        dataDir.deleteRecursively()
        logFile.delete()
    }

    /** Calls the HTTP API: (status, parsed JSON body or null). */
    fun api(method: String, path: String, body: JSONObject? = null): Pair<Int, JSONObject?> {
        val conn = URL("http://127.0.0.1:$apiPort$path").openConnection() as HttpURLConnection
        conn.requestMethod = method
        conn.connectTimeout = 5000
        conn.readTimeout = 10_000
        conn.setRequestProperty("Authorization", "Bearer $API_KEY")
        if (body != null) {
            conn.doOutput = true
            conn.setRequestProperty("Content-Type", "application/json")
            conn.outputStream.use { it.write(body.toString().toByteArray()) }
        }
        try {
            val status = conn.responseCode
            val stream = if (status >= 400) conn.errorStream else conn.inputStream
            val text = stream?.use { it.readBytes().toString(Charsets.UTF_8) } ?: ""
            return Pair(status, if (text.isBlank()) null else JSONObject(text))
        } finally {
            conn.disconnect()
        }
    }

    fun publish(channel: String, data: JSONObject = JSONObject(), event: String = "message.new"): JSONObject {
        val (status, answer) = api("POST", "/api/v1/publish", JSONObject().put("channel", channel).put("event", event).put("data", data))
        check(status == 200) { "publish: $status $answer" }
        return answer!!
    }

    fun disconnect(userId: String, code: Int, reason: String = "test"): Int {
        val (status, answer) = api("POST", "/api/v1/disconnect", JSONObject().put("userId", userId).put("code", code).put("reason", reason))
        check(status == 200) { "disconnect: $status $answer" }
        return answer!!.getInt("disconnected")
    }

    /** The stored events of [channel] (up to 1,000). */
    fun history(channel: String): List<JSONObject> {
        val (status, answer) = api("GET", "/api/v1/channels/$channel/history?after=0&limit=1000")
        check(status == 200) { "history: $status $answer" }
        val events = answer!!.getJSONArray("events")
        return (0 until events.length()).map { events.getJSONObject(it) }
    }

    companion object {
        const val API_KEY = "android-sdk-test-api-key"
        /** Pings every 0.3 s, so dead links show within a second. */
        val FAST_ENV = mapOf("WSSERVER_HEARTBEAT_INTERVAL" to "0.3", "WSSERVER_HEARTBEAT_TIMEOUT" to "0.5")
    }
}

/** One real server shared by a whole test class: `@ClassRule @JvmField val running = SharedServer()`. */
class SharedServer : org.junit.rules.ExternalResource() {
    lateinit var server: TestServer
        private set

    override fun before() {
        server = TestServer().start()
    }

    override fun after() {
        server.close()
    }
}

/** `python -m wsserver.chaos_proxy` in front of a server. */
class ChaosProxy(targetPort: Int, vararg options: String) : java.io.Closeable {
    val port = freePort()
    private val process: Process = ProcessBuilder(
        listOf(PYTHON, "-m", "wsserver.chaos_proxy", "--listen", "127.0.0.1:$port", "--target", "127.0.0.1:$targetPort") + options
    ).directory(ROOT).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start()

    init {
        eventually(WAIT_MS, "the chaos proxy to listen") {
            try {
                Socket("127.0.0.1", port).close()
                true
            } catch (e: IOException) {
                check(process.isAlive) { "chaos proxy exited with ${process.exitValue()}" }
                false
            }
        }
    }

    val wsUrl get() = "ws://127.0.0.1:$port/ws"

    override fun close() {
        process.destroy()
        if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly().waitFor()
    }
}

/** Collects a client's events; [waitFor] blocks until enough matching ones arrived. */
class Recorder : ClientListener {
    private val lock = ReentrantLock()
    private val changed = lock.newCondition()
    private val events = ArrayList<ClientEvent>()

    override fun onEvent(event: ClientEvent) = lock.withLock {
        events.add(event)
        changed.signalAll()
    }

    fun all(): List<ClientEvent> = lock.withLock { ArrayList(events) }

    inline fun <reified T : ClientEvent> of(noinline where: (T) -> Boolean = { true }): List<T> =
        all().filterIsInstance<T>().filter(where)

    inline fun <reified T : ClientEvent> waitFor(count: Int = 1, timeoutMs: Long = WAIT_MS, noinline where: (T) -> Boolean = { true }): T =
        waitUntil(timeoutMs, "$count ${T::class.java.simpleName}") { all().filterIsInstance<T>().filter(where).getOrNull(count - 1) }

    fun <R> waitUntil(timeoutMs: Long, what: String, found: () -> R?): R {
        val deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs)
        lock.withLock {
            while (true) {
                val result = found()
                if (result != null) return result
                val left = deadline - System.nanoTime()
                if (left <= 0) throw AssertionError("timed out waiting for $what; events: $events")
                changed.awaitNanos(left)
            }
        }
        @Suppress("UNREACHABLE_CODE")
        throw IllegalStateException("unreachable")
    }

    fun seqs(channel: String): List<Long> = of<ChannelEvent> { it.channel == channel }.map { it.seq }
}

/** Hands out sockets whose reading can be frozen: the peer's bytes stop arriving, nothing is closed
 *  (a dozing phone, a half-open NAT). Writes still go out. */
class FreezableSocketFactory : SocketFactory() {
    val sockets = CopyOnWriteArrayList<FreezableSocket>()

    fun freezeAll() {
        for (s in sockets) s.frozen = true
    }

    override fun createSocket(): Socket = FreezableSocket().also { sockets.add(it) }
    override fun createSocket(host: String, port: Int): Socket = throw UnsupportedOperationException()
    override fun createSocket(host: String, port: Int, local: InetAddress, localPort: Int): Socket = throw UnsupportedOperationException()
    override fun createSocket(host: InetAddress, port: Int): Socket = throw UnsupportedOperationException()
    override fun createSocket(host: InetAddress, port: Int, local: InetAddress, localPort: Int): Socket =
        throw UnsupportedOperationException()
}

class FreezableSocket : Socket() {
    @Volatile
    var frozen = false

    override fun getInputStream(): InputStream = object : FilterInputStream(super.getInputStream()) {
        private fun waitWhileFrozen() {
            while (frozen) {
                if (isClosed) throw SocketException("socket closed")
                Thread.sleep(10)
            }
        }

        // Bytes a read already blocked on when the freeze began are held back too.
        override fun read(): Int {
            waitWhileFrozen()
            val byte = super.read()
            waitWhileFrozen()
            return byte
        }

        override fun read(b: ByteArray, off: Int, len: Int): Int {
            waitWhileFrozen()
            val count = super.read(b, off, len)
            waitWhileFrozen()
            return count
        }
    }
}

/** A client with fast test settings, started, closed when [block] ends. */
fun <R> withClient(
    url: String,
    tokens: TokenProvider,
    positions: PositionStore = MemoryPositionStore(),
    backoff: Backoff = Backoff(10, 50),
    socketFactory: SocketFactory? = null,
    block: (WsClient, Recorder) -> R
): R {
    val recorder = Recorder()
    val http = socketFactory?.let { okhttp3.OkHttpClient.Builder().socketFactory(it).build() }
    val options = WsClientOptions(
        positions = positions, backoff = backoff, heartbeatSlackMs = 500, connectTimeoutMs = 5_000,
        probeTimeoutMs = 1_000, okHttpClient = http, seed = 1L
    )
    val client = WsClient(url, tokens, recorder, options)
    client.start()
    try {
        return block(client, recorder)
    } finally {
        client.close()
    }
}
