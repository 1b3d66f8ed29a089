// The client: a supervisor that connects, authenticates, resubscribes from each channel's position
// and resends unacknowledged publishes after every drop, and the per-link protocol state machine.
package io.wsserver.client

import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.Response
import okhttp3.WebSocket
import okhttp3.WebSocketListener
import org.json.JSONException
import org.json.JSONObject
import java.net.ProtocolException
import java.util.Random
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.Executor
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import java.util.concurrent.Future
import java.util.concurrent.ScheduledFuture
import java.util.concurrent.ScheduledThreadPoolExecutor
import java.util.concurrent.RejectedExecutionException
import java.util.concurrent.Semaphore
import java.util.concurrent.ThreadFactory
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import java.util.logging.Logger

/** How a [WsClient] behaves; every field has a default fit for a phone. */
class WsClientOptions(
    /** Where the listener and publish callbacks run, one at a time, in order (e.g. the main thread's
     *  executor). Default: a private daemon thread. */
    val deliveryExecutor: Executor? = null,
    /** Channel positions (default: in memory; [FilePositionStore] survives the process). */
    val positions: PositionStore = MemoryPositionStore(),
    /** Reconnect and retry delays (default 0.5 s doubling to 20 s, full jitter; "at once" within 250 ms). */
    val backoff: Backoff = Backoff(),
    /** Silence tolerated beyond `heartbeatInterval` before the link counts as dead. */
    val heartbeatSlackMs: Long = 3_000,
    /** TCP + TLS + WebSocket handshake + `auth_ok`. */
    val connectTimeoutMs: Long = 10_000,
    /** After `onForeground()`/`onNetworkChanged(true)` on an open link: time a `ping` has to be answered. */
    val probeTimeoutMs: Long = 3_000,
    /** A base OkHttp client (TLS settings, proxies, a socket factory); its ping interval is replaced. */
    val okHttpClient: OkHttpClient? = null,
    /** Close the link in the background and reconnect on `onForeground()`. */
    val pauseInBackground: Boolean = false,
    /** Events handed to the delivery executor and not yet processed; beyond it the socket is not read. */
    val maxQueuedEvents: Int = 10_000,
    /** Seeds the jitter (reproducible tests). */
    val seed: Long? = null,
    /** A link must stay up this long after `auth_ok` before its end counts as a fresh start (backoff
     *  forgotten); a shorter one counts as a failed attempt. */
    val stableLinkMs: Long = 10_000,
    /** Hears failures the client survived: a listener or callback that threw, a store that failed. */
    val errorListener: ErrorListener? = null,
    /** Where pending publishes survive process death (default: memory only; see [FileOutboxStore]). */
    val outbox: OutboxStore = MemoryOutboxStore(),
    /** Unacknowledged publishes at most; `publish()` beyond it throws [OutboxFullException]. */
    val maxPendingPublishes: Int = 1_000,
    /** A publish not acknowledged within this time (wall clock, also across restarts) fails with
     *  [PublishExpiredException] instead of being sent; keep it below the server's `history_ttl`. */
    val publishTtlMs: Long = 24 * 3_600_000L,
    /** Hears how the publishes restored from [outbox] (made by an earlier process) end. */
    val restoredPublishes: PublishCallback? = null
)

/** Counters for monitoring and tests. */
data class ClientStats(
    val connects: Int,
    val reconnects: Int,
    val delivered: Long,
    val duplicatesDropped: Long,
    val gaps: Int,
    val publishesResent: Int,
    /** Channel callbacks that threw and were redelivered. */
    val redeliveries: Int = 0
)

/**
 * A reconnecting client for one server URL (`ws://host:port/ws` or `wss://…`).
 *
 * Every [ClientEvent] reaches [listener] on the delivery executor, one at a time, in order. A
 * channel's position is saved in the [PositionStore] only after the listener returned for the
 * event; when it throws, nothing is committed and the channel is redelivered from the last
 * committed position. Thread-safe: call it from any thread.
 */
class WsClient(
    private val url: String,
    private val tokenProvider: TokenProvider,
    private val listener: ClientListener,
    private val options: WsClientOptions = WsClientOptions()
) {
    private val lock = Any()
    private val ownExecutor: ExecutorService? =
        if (options.deliveryExecutor == null) Executors.newSingleThreadExecutor(daemons("wsclient-delivery")) else null
    private val delivery = SerialExecutor(options.deliveryExecutor ?: ownExecutor!!)
    private val timer = ScheduledThreadPoolExecutor(1, daemons("wsclient-timer")).apply {
        removeOnCancelPolicy = true
        executeExistingDelayedTasksAfterShutdownPolicy = false
    }
    private val workers = Executors.newCachedThreadPool(daemons("wsclient-token"))
    /** Outbox store removals, off the lock and off OkHttp's reader thread. */
    private val storeIo = Executors.newSingleThreadExecutor(daemons("wsclient-outbox"))
    private val rng = options.seed?.let { Random(it) } ?: Random()
    private val baseHttp = options.okHttpClient ?: OkHttpClient()
    private val positions = options.positions
    private val cursors = LinkedHashMap<String, ChannelCursor>()
    private val committed = ConcurrentHashMap<String, Position>()
    private val outbox = Outbox(options.maxPendingPublishes, options.publishTtlMs)
    private val permits = Semaphore(options.maxQueuedEvents)
    private val waitingForApp = AtomicInteger()
    private val pacer = ReconnectPacer(options.backoff, options.stableLinkMs, rng)
    private val device = DeviceState(options.pauseInBackground)

    @Volatile
    var state: ConnectionState = ConnectionState.CONNECTING
        private set

    private var started = false
    private var stopped = false
    private var generation = 0
    private var link: Link? = null
    private var connecting = false
    private var rejected: String? = null
    private var tokenReason = TokenReason.CONNECT
    private var pendingConnect: ScheduledFuture<*>? = null
    private var tokenFetch: Future<*>? = null
    private var lostAt = System.nanoTime()
    private var maxMessageSize: Int? = null
    private var knownHeartbeatMs: Long? = null
    private var connects = 0
    private var reconnects = 0
    private var delivered = 0L
    private var duplicates = 0L
    private var gaps = 0
    private var resent = 0
    private var redeliveries = 0

    init {
        restoreOutbox()
    }

    // ------------------------------------------------------------------ public API

    /** Starts connecting; the client then keeps itself connected until [close] or a NEVER close code. */
    fun start() = synchronized(lock) {
        check(!started) { "start() was already called" }
        started = true
        connectNow()
    }

    /**
     * Subscribes now or at the next connection, and after every reconnect. Resumes from the
     * position store's entry for [channel] if it has one, else from [lastSeq]/[epoch]
     * (`lastSeq = 0`: from the start of the retained history; null: live events only).
     */
    @JvmOverloads
    fun subscribe(channel: String, lastSeq: Long? = null, epoch: String? = null) = synchronized(lock) {
        if (stopped) throw ClientClosedException("the client is closed")
        if (cursors.containsKey(channel)) return@synchronized
        val stored = positions.load(channel)
        if (stored != null) committed[channel] = stored
        val cursor = ChannelCursor(channel, stored ?: lastSeq?.let { Position(it, epoch) })
        cursors[channel] = cursor
        link?.let { if (it.authenticated) it.subscribe(cursor) }
    }

    /** Stops the channel's subscription and forgets its position. */
    fun unsubscribe(channel: String) {
        synchronized(lock) {
            cursors.remove(channel) ?: return
            committed.remove(channel)
            val l = link
            if (l != null && l.authenticated && channel in l.subscribed) {
                l.forget(channel)
                l.send(Frames.make("unsubscribe", JSONObject().put("channel", channel)).toString())
            }
        }
        forgetLater(channel)()
    }

    /**
     * Publishes through the outbox; [callback] hears the acknowledgement (or the final failure) on
     * the delivery executor. A publish interrupted by a drop is resent with the same frame id after
     * the reconnect (after a restart too, with a durable [WsClientOptions.outbox]), so it is stored
     * exactly once. Returns the frame id.
     *
     * [id] is the app's idempotency key (1-128 characters, a UUID v4 is best; default: a fresh
     * UUID v4): the same id published again gets the same answer and stores nothing new. While a
     * publish with that id is pending, another `publish` with it only adds [callback] to it.
     *
     * @throws MessageTooBigException the frame exceeds the server's `maxMessageSize` (never sent)
     * @throws OutboxFullException `maxPendingPublishes` publishes wait for their acknowledgement
     * @throws ClientClosedException the client is closed
     */
    @JvmOverloads
    fun publish(channel: String, event: String, data: JSONObject, callback: PublishCallback? = null, id: String? = null): String {
        require(id == null || id.length in 1..MAX_ID_LENGTH) { "id must be 1-$MAX_ID_LENGTH characters" }
        val payload = JSONObject().put("channel", channel).put("event", event).put("data", data)
        val frame = if (id == null) Frames.make("publish", payload) else Frames.make("publish", payload, id)
        val frameId = frame.getString("id")
        val wire = frame.toString()
        val createdAt = System.currentTimeMillis()
        synchronized(lock) {
            if (joined(frameId, callback)) return frameId
            val limit = maxMessageSize
            val size = Frames.sizeOf(wire)
            if (limit != null && size > limit) throw MessageTooBigException("publish frame of $size bytes > maxMessageSize $limit")
            for (old in outbox.expire(createdAt)) settled(old, null, PublishExpiredException("not acknowledged within ${options.publishTtlMs} ms"))
            if (outbox.full) throw OutboxFullException("${outbox.size} publishes wait for their acknowledgement (maxPendingPublishes)")
        }
        // On disk before it is first sent, off the lock: a store may be slow.
        val unstored = Failures.guard { options.outbox.add(StoredPublish(frameId, wire, createdAt)) }
        if (unstored != null) report(ErrorSource.OUTBOX_STORE, unstored, "publish $frameId kept in memory only")
        synchronized(lock) {
            if (!stopped) {
                if (joined(frameId, callback)) return frameId
                val entry = Pending(frameId, wire, createdAt)
                if (callback != null) entry.callbacks.add(callback)
                outbox.add(entry)
                link?.let { if (it.authenticated) it.sendPublish(entry) }
                return frameId
            }
        }
        val failed = Failures.guard { options.outbox.remove(frameId) } // closed meanwhile: not for the next process either
        if (failed != null) report(ErrorSource.OUTBOX_STORE, failed, "publish $frameId stays in the store (resent later, stored once)")
        throw ClientClosedException("the client is closed")
    }

    /** Closes the link (1000) for good; pending publishes fail with [ClientClosedException]. */
    fun close() = synchronized(lock) {
        if (stopped) return@synchronized
        link?.let {
            it.end()
            it.ws.close(CloseCodes.NORMAL, "client closing")
        }
        link = null
        shutDown(CloseCodes.NORMAL, "closed by the application")
    }

    /** The app came to the foreground (`ProcessLifecycleOwner` `onStart`): a real wake. Failures are
     *  forgotten and the client reconnects soon (even when the device looked offline), or probes
     *  the open link, which may have died while the phone dozed. */
    fun onForeground() = synchronized(lock) { apply(device.onForeground()) }

    /** The app went to the background; with `pauseInBackground` the link is closed until [onForeground]. */
    fun onBackground() = synchronized(lock) { apply(device.onBackground()) }

    /** `ConnectivityManager.NetworkCallback.onAvailable(network)`: a network the device did not have
     *  is a wake (reconnect soon, or probe the open link: it may sit on the old network). */
    fun onNetworkAvailable(network: Any) = synchronized(lock) { apply(device.onNetworkAvailable(network)) }

    /** `NetworkCallback.onLost(network)`: with other networks left the open link is probed; with
     *  none left the device counts as offline (reconnect attempts slow to the backoff cap). */
    fun onNetworkLost(network: Any) = synchronized(lock) { apply(device.onNetworkLost(network)) }

    /**
     * The whole device's connectivity, for apps that do not track networks one by one. True: a wake
     * (reconnect soon, or probe the open link). False: offline, a hint only: attempts go on at the
     * backoff cap, [onForeground] still reconnects, and a link that authenticates ends it.
     */
    @JvmOverloads
    fun onNetworkChanged(available: Boolean = true) = synchronized(lock) { apply(device.onNetworkChanged(available)) }

    /** The position of [channel] the app has processed up to. */
    fun position(channel: String): Position? =
        committed[channel] ?: synchronized(lock) { if (cursors.containsKey(channel)) null else positions.load(channel) }

    /** Unacknowledged publishes. */
    val pendingPublishes: Int get() = synchronized(lock) { outbox.size }

    val stats: ClientStats
        get() = synchronized(lock) { ClientStats(connects, reconnects, delivered, duplicates, gaps, resent, redeliveries) }

    // ------------------------------------------------------------------ supervision (all under lock)

    private fun apply(nudge: Nudge) {
        if (stopped || !started) return
        val l = link
        when (nudge) {
            Nudge.NONE -> Unit
            Nudge.PROBE -> if (l != null && l.authenticated) l.probe()
            Nudge.PAUSE -> if (l != null) finish(l, CloseCodes.NORMAL, "paused in the background", pause = true)
            Nudge.WAKE -> when {
                l != null -> if (l.authenticated) l.probe()
                connecting || device.paused -> Unit
                else -> connectAfter(pacer.wake())
            }
        }
    }

    private fun connectAfter(delayMs: Long) {
        pendingConnect?.cancel(false)
        pendingConnect = timer.schedule(Runnable {
            synchronized(lock) {
                pendingConnect = null
                connectNow()
            }
        }, delayMs, TimeUnit.MILLISECONDS)
    }

    private fun connectNow() {
        if (stopped || !started || device.paused) return
        if (link != null || connecting) return
        pendingConnect?.cancel(false)
        pendingConnect = null
        connecting = true
        val gen = ++generation
        val startedAt = System.nanoTime()
        val reason = tokenReason
        state = ConnectionState.CONNECTING
        emit(Connecting(pacer.attempt))
        tokenFetch = workers.submit(Runnable {
            var token: String? = null
            val failure = Failures.guard { token = tokenProvider.token(reason) }
            if (failure is InterruptedException) return@Runnable
            if (failure != null && synchronized(lock) { gen == generation && !stopped }) {
                report(ErrorSource.TOKEN_PROVIDER, failure, "no connection this time; retrying with backoff")
            }
            synchronized(lock) {
                if (gen != generation || stopped) return@Runnable
                tokenFetch = null
                connecting = false
                when {
                    failure != null -> afterLinkEnded(CloseCodes.ABNORMAL, "token provider failed: $failure", null, null)
                    token == null -> shutDown(CloseCodes.AUTH_FAILED, "the token provider has no token")
                    token == rejected -> shutDown(CloseCodes.AUTH_FAILED, "the token provider returned the token the server rejected")
                    else -> openLink(gen, token!!, startedAt)
                }
            }
        })
    }

    private fun openLink(gen: Int, token: String, startedAt: Long) {
        val http = baseHttp.newBuilder()
            .pingInterval(knownHeartbeatMs ?: DEFAULT_PING_MS, TimeUnit.MILLISECONDS)
            .connectTimeout(options.connectTimeoutMs, TimeUnit.MILLISECONDS)
            .build()
        val l = Link(gen, token, startedAt, lostAt)
        link = l
        l.ws = http.newWebSocket(Request.Builder().url(url).build(), l)
        l.deadline = timer.schedule(Runnable {
            synchronized(lock) {
                if (!l.authenticated) finish(l, CloseCodes.ABNORMAL, "no auth_ok within ${options.connectTimeoutMs} ms")
            }
        }, options.connectTimeoutMs, TimeUnit.MILLISECONDS)
    }

    /**
     * Ends [l] (once) and decides what comes next; [pause] ends it without a reconnect timer.
     * [streak] > 0: trouble on one channel (a gap, a listener that threw) ended it, for the n-th time.
     */
    private fun finish(l: Link, code: Int, reason: String, cancel: Boolean = true, pause: Boolean = false, streak: Int = 0) {
        if (l.ended) return
        l.end()
        if (pause) l.ws.close(CloseCodes.NORMAL, reason) else if (cancel) l.ws.cancel()
        if (link === l) link = null
        lostAt = System.nanoTime()
        if (stopped) return
        if (pause) {
            state = ConnectionState.RECONNECTING
            emit(Reconnecting(pacer.attempt, 0, code, reason, Reconnect.AT_ONCE, true))
            return
        }
        afterLinkEnded(code, reason, l.authenticatedAt, l.token, streak)
    }

    private fun afterLinkEnded(code: Int, reason: String, authenticatedAt: Long?, token: String?, streak: Int = 0) {
        val advice = CloseCodes.adviceFor(code)
        if (advice == Reconnect.NEVER) {
            shutDown(code, reason)
            return
        }
        rejected = if (code == CloseCodes.AUTH_FAILED) token else null
        tokenReason = if (advice == Reconnect.NEW_TOKEN) TokenReason.REJECTED else TokenReason.CONNECT
        val delay = pacer.linkEnded(nowMs(), authenticatedAt, advice, device.offline, streak)
        reconnects += 1
        val waiting = device.paused
        state = ConnectionState.RECONNECTING
        val attempt = pacer.attempt
        val how = listOfNotNull(advice.toString(), if (device.offline) "offline" else null, if (waiting) "waiting" else null)
        log.info("reconnecting in $delay ms after $code $reason (attempt $attempt, ${how.joinToString(", ")})")
        emit(Reconnecting(attempt, delay, code, reason, advice, waiting))
        if (!waiting) connectAfter(delay)
    }

    private fun shutDown(code: Int, reason: String) {
        stopped = true
        state = ConnectionState.CLOSED
        pendingConnect?.cancel(false)
        tokenFetch?.cancel(true)
        val error = ClientClosedException("client closed: $code $reason")
        for (entry in outbox.drain()) settled(entry, null, error)
        emit(Closed(code, reason)) { ownExecutor?.shutdown() }
        timer.shutdown()
        workers.shutdownNow()
        storeIo.shutdown() // after the removals queued above
    }

    // ------------------------------------------------------------------ outbox

    /** Publishes an earlier process left in the outbox store: resent after the first `auth_ok`. */
    private fun restoreOutbox() {
        var stored: List<StoredPublish> = emptyList()
        val failed = Failures.guard { stored = options.outbox.load() }
        if (failed != null) report(ErrorSource.OUTBOX_STORE, failed, "no publishes restored")
        val now = System.currentTimeMillis()
        for (publish in stored) {
            val entry = Pending(publish.id, publish.wire, publish.createdAtMs)
            options.restoredPublishes?.let { entry.callbacks.add(it) }
            if (outbox.isExpired(entry, now)) {
                settled(entry, null, PublishExpiredException("restored publish ${publish.id} older than ${options.publishTtlMs} ms"))
            } else {
                outbox.add(entry)
            }
        }
    }

    /** A publish with [frameId] is pending: [callback] joins it. */
    private fun joined(frameId: String, callback: PublishCallback?): Boolean {
        if (stopped) throw ClientClosedException("the client is closed")
        val entry = outbox[frameId] ?: return false
        if (callback != null) entry.callbacks.add(callback)
        return true
    }

    /** [entry] left the outbox with [result] or [error]: drop it from the store, tell its callbacks. */
    private fun settled(entry: Pending, result: PublishResult?, error: WsClientException?) {
        val id = entry.frameId
        try {
            storeIo.execute {
                val failed = Failures.guard { options.outbox.remove(id) }
                if (failed != null) report(ErrorSource.OUTBOX_STORE, failed, "publish $id stays in the store (resent later, stored once)")
            }
        } catch (e: RejectedExecutionException) {
            log.warning("publish $id settled after close: left in the outbox store")
        }
        val callbacks = entry.callbacks.toList()
        delivery.execute(Runnable {
            if (callbacks.isEmpty() && error is PublishExpiredException) {
                report(ErrorSource.OUTBOX_STORE, error, "publish $id dropped (nobody to tell)")
            }
            for (callback in callbacks) {
                val failure = Failures.guard { if (result != null) callback.onPublished(result) else callback.onFailed(error!!) }
                if (failure != null) report(ErrorSource.PUBLISH_CALLBACK, failure, "publish callback for $id threw; delivery goes on")
            }
        })
    }

    // ------------------------------------------------------------------ delivery

    /** A state event (not a channel's data): a listener that throws is reported, nothing else. */
    private fun emit(event: ClientEvent, after: (() -> Unit)? = null) {
        delivery.execute(Runnable {
            val failure = Failures.guard { listener.onEvent(event) }
            if (failure != null) report(ErrorSource.LISTENER, failure, "the listener threw on $event; delivery goes on")
            after?.invoke()
        })
    }

    /**
     * Hands a channel's [event] (an event, a snapshot, a reset) to the app. When the listener returns,
     * [to] is committed; when it throws, nothing is, and the channel is redelivered from [from], its
     * last committed position (the events of the channel queued behind it are skipped: they come
     * again after it). [release]: the event holds a backpressure permit.
     */
    private fun deliver(event: ClientEvent, cursor: ChannelCursor, from: Position?, to: Position, seq: Long, release: Boolean = false) {
        val round = cursor.round
        delivery.execute(Runnable {
            try {
                if (!current(cursor, round)) return@Runnable
                val failure = Failures.guard { listener.onEvent(event) }
                if (failure == null) commit(cursor, round, to) else redeliver(cursor, round, from, seq, event, failure)
            } finally {
                if (release) permits.release()
            }
        })
    }

    private fun current(cursor: ChannelCursor, round: Int): Boolean =
        synchronized(lock) { cursors[cursor.channel] === cursor && cursor.round == round }

    /** Records [position] once the app processed what led to it (runs on the delivery executor). */
    private fun commit(cursor: ChannelCursor, round: Int, position: Position) {
        if (!current(cursor, round)) return
        val channel = cursor.channel
        val failed = Failures.guard { positions.save(channel, position) }
        committed[channel] = position
        if (failed != null) report(ErrorSource.POSITION_STORE, failed, "position $position of $channel not saved", channel, position.seq)
    }

    private fun redeliver(cursor: ChannelCursor, round: Int, from: Position?, seq: Long, event: ClientEvent, failure: Throwable) {
        val channel = cursor.channel
        val action = if (from == null) "not committed; no earlier position to redeliver from"
        else "not committed; redelivering $channel after seq ${from.seq}"
        report(ErrorSource.LISTENER, failure, "the listener threw on ${event.javaClass.simpleName} $channel seq $seq: $action", channel, seq)
        synchronized(lock) {
            if (from == null || cursors[channel] !== cursor || cursor.round != round) return
            cursor.rewind(from)
            redeliveries += 1
            val streak = pacer.trouble(channel, nowMs())
            val l = link
            // A link that has not authenticated yet subscribes from the rewound cursor anyway.
            if (l != null && l.authenticated && channel in l.subscribed) {
                finish(l, CloseCodes.ABNORMAL, "the listener failed on $channel seq $seq: redelivering from seq ${from.seq + 1}", streak = streak)
            }
        }
    }

    private fun forgetLater(channel: String): () -> Unit = {
        val failed = Failures.guard { positions.forget(channel) }
        if (failed != null) report(ErrorSource.POSITION_STORE, failed, "position of $channel not forgotten", channel)
    }

    private fun report(source: ErrorSource, error: Throwable, action: String, channel: String? = null, seq: Long? = null) =
        Failures.report(options.errorListener, ClientError(source, error, action, channel, seq))

    // ------------------------------------------------------------------ one link

    /** One WebSocket's protocol state. Callbacks from a link that ended are ignored, so nothing
     *  started for it (a token refresh in particular) can act on the next one. */
    private inner class Link(val gen: Int, var token: String, val startedAt: Long, val lostAt: Long) : WebSocketListener() {
        lateinit var ws: WebSocket
        var authenticated = false
        /** When `auth_ok` arrived (ms, monotonic). */
        var authenticatedAt: Long? = null
        var ended = false
        var heartbeatMs = 0L
        @Volatile
        var lastReceived = System.nanoTime()
        var pingedAt: Long? = null
        var probeSentAt: Long? = null
        val subscribed = HashSet<String>()
        val recovering = HashMap<String, Long?>()
        val subRefs = HashMap<String, String>()
        /** Retryable refusals of each channel's `subscribe` on this link. */
        val subscribeTries = HashMap<String, Int>()
        /** `auth` frames (first and refreshes) awaiting their answer: frame id → token. */
        val authRefs = HashMap<String, String>()
        var authTries = 0
        var resubscribed = false
        var liveReported = false
        var refresh: Future<*>? = null
        var deadline: ScheduledFuture<*>? = null
        var watchdog: ScheduledFuture<*>? = null
        val retries = ArrayList<ScheduledFuture<*>>()

        fun end() {
            ended = true
            refresh?.cancel(true)
            deadline?.cancel(false)
            watchdog?.cancel(false)
            for (retry in retries) retry.cancel(false)
        }

        fun send(wire: String) {
            ws.send(wire) // false on a closing link: the outbox and the resubscribe cover it
        }

        fun sendAuth(with: String) {
            val auth = Frames.make("auth", JSONObject().put("token", with))
            authRefs[auth.getString("id")] = with
            send(auth.toString())
        }

        /** Runs [task] under the lock after [delayMs], unless this link ended meanwhile. */
        fun later(delayMs: Long, task: () -> Unit) {
            retries += timer.schedule(Runnable { synchronized(lock) { if (!ended) task() } }, delayMs, TimeUnit.MILLISECONDS)
        }

        fun probe() {
            val inFlight = probeSentAt
            if (ended || (inFlight != null && lastReceived - inFlight < 0)) return // one unanswered probe at a time
            probeSentAt = System.nanoTime()
            send(Frames.make("ping", JSONObject()).toString())
        }

        // -------------------------------------------------------------- OkHttp callbacks

        override fun onOpen(webSocket: WebSocket, response: Response) = synchronized(lock) {
            if (ended) return@synchronized
            connects += 1
            lastReceived = System.nanoTime()
            sendAuth(token)
        }

        override fun onMessage(webSocket: WebSocket, text: String) {
            lastReceived = System.nanoTime()
            try {
                val frame = JSONObject(text)
                val type = frame.optString("type")
                if (type.contains('.')) {
                    onChannelFrame(frame)
                } else {
                    synchronized(lock) { if (!ended) onControl(type, frame) }
                }
            } catch (e: JSONException) {
                emit(ServerError("bad_frame", "undecodable server frame: ${e.message}", null))
            }
        }

        override fun onClosing(webSocket: WebSocket, code: Int, reason: String) {
            webSocket.close(CloseCodes.NORMAL, null)
            synchronized(lock) { finish(this, code, if (reason.isEmpty()) "closed by the server" else reason, cancel = false) }
        }

        override fun onClosed(webSocket: WebSocket, code: Int, reason: String) = synchronized(lock) {
            finish(this, code, reason, cancel = false)
        }

        override fun onFailure(webSocket: WebSocket, t: Throwable, response: Response?) = synchronized(lock) {
            // OkHttp 3 fails on close codes 1012-2999 ("reserved") although 1013 is the server's "try
            // again later": take the code from the message so its advice (backoff) still applies.
            val reserved = if (t is ProtocolException) t.message?.let { RESERVED_CODE.find(it) } else null
            if (reserved != null) {
                finish(this, reserved.groupValues[1].toInt(), "closed by the server")
            } else {
                finish(this, CloseCodes.ABNORMAL, "link lost: $t")
            }
        }

        // -------------------------------------------------------------- frames

        /** Channel events, with backpressure: beyond `maxQueuedEvents` undelivered events this
         *  (OkHttp reader) thread waits for the app, and the socket is not read meanwhile. */
        private fun onChannelFrame(frame: JSONObject) {
            if (!permits.tryAcquire()) {
                waitingForApp.incrementAndGet()
                try {
                    permits.acquire()
                } catch (e: InterruptedException) {
                    Thread.currentThread().interrupt()
                    return
                } finally {
                    waitingForApp.decrementAndGet()
                    lastReceived = System.nanoTime()
                }
            }
            var handed = false
            try {
                synchronized(lock) { if (!ended) handed = onEvent(frame) }
            } finally {
                if (!handed) permits.release()
            }
        }

        private fun onControl(type: String, frame: JSONObject) {
            when (type) {
                "auth_ok" -> onAuthOk(frame)
                "token_expiring" -> onTokenExpiring()
                "subscribed" -> onSubscribed(frame)
                "snapshot" -> onSnapshot(frame)
                "unsubscribed" -> onUnsubscribed(frame)
                "published" -> onPublished(frame)
                "error" -> onError(frame)
                else -> Unit // pong (any frame is a sign of life) and types this SDK does not know
            }
        }

        private fun onAuthOk(frame: JSONObject) {
            authRefs.remove(frame.optString("ref"))
            authTries = 0
            val p = frame.getJSONObject("payload")
            maxMessageSize = p.getInt("maxMessageSize")
            if (authenticated) return // a refresh was accepted
            authenticated = true
            authenticatedAt = nowMs()
            device.onLinkUp()
            heartbeatMs = p.getLong("heartbeatInterval")
            if (heartbeatMs > 0) knownHeartbeatMs = heartbeatMs
            deadline?.cancel(false)
            state = ConnectionState.CONNECTED
            emit(Connected(p.getString("sessionId"), p.getString("userId"), heartbeatMs))
            for (cursor in cursors.values.toList()) subscribe(cursor)
            for (entry in outbox.unsent(gen)) sendPublish(entry)
            resubscribed = true
            checkLive()
            val tick = (heartbeatMs / 4).coerceIn(20L, 500L)
            watchdog = timer.scheduleAtFixedRate(Runnable { synchronized(lock) { watch() } }, tick, tick, TimeUnit.MILLISECONDS)
        }

        /** A `ping` once nothing arrived for `heartbeatInterval` (OkHttp answers the server's
         *  pings out of our sight); dead after `heartbeatInterval + slack` of silence. */
        private fun watch() {
            if (ended) return
            val now = System.nanoTime()
            if (waitingForApp.get() > 0) lastReceived = now // the app holds us up, not the network
            val last = lastReceived
            val probe = probeSentAt
            if (probe != null) {
                if (last - probe >= 0) {
                    probeSentAt = null
                } else if (now - probe > ms(options.probeTimeoutMs)) {
                    finish(this, CloseCodes.ABNORMAL, "dead link: no answer to the probe in ${options.probeTimeoutMs} ms")
                    return
                }
            }
            val silent = now - last
            if (silent > ms(heartbeatMs + options.heartbeatSlackMs)) {
                finish(this, CloseCodes.ABNORMAL, "dead link: nothing received for ${silent / 1_000_000} ms")
            } else if (silent > ms(heartbeatMs) && (pingedAt.let { it == null || it - last < 0 })) {
                pingedAt = now
                send(Frames.make("ping", JSONObject()).toString())
            }
        }

        private fun onTokenExpiring() {
            if (refresh != null) return
            refresh = workers.submit(Runnable {
                var fresh: String? = null
                val failure = Failures.guard { fresh = tokenProvider.token(TokenReason.EXPIRING) }
                if (failure is InterruptedException) return@Runnable
                if (failure != null && synchronized(lock) { !ended }) {
                    report(ErrorSource.TOKEN_PROVIDER, failure, "no refresh on this link (the server closes 4002 at expiry; then a new token)")
                }
                synchronized(lock) {
                    refresh = null
                    val token = fresh
                    if (token != null && !ended && link === this) {
                        this.token = token
                        sendAuth(token)
                    }
                }
            })
        }

        fun subscribe(cursor: ChannelCursor) {
            if (!subscribed.add(cursor.channel)) return
            recovering[cursor.channel] = null
            val frame = Frames.make("subscribe", cursor.subscribePayload())
            subRefs[frame.getString("id")] = cursor.channel
            send(frame.toString())
        }

        fun forget(channel: String) {
            subscribed.remove(channel)
            recovering.remove(channel)
        }

        fun sendPublish(entry: Pending) {
            if (ended || entry.sentOn == gen) return
            if (outbox.isExpired(entry, System.currentTimeMillis())) {
                outbox.remove(entry.frameId)
                settled(entry, null, PublishExpiredException("not acknowledged within ${options.publishTtlMs} ms"))
                return
            }
            val limit = maxMessageSize
            if (limit != null && Frames.sizeOf(entry.wire) > limit) {
                outbox.remove(entry.frameId)
                settled(entry, null, MessageTooBigException("publish frame > maxMessageSize $limit"))
                return
            }
            if (entry.sentOn != null) resent += 1
            entry.sentOn = gen
            send(entry.wire)
        }

        private fun checkLive() {
            if (resubscribed && recovering.isEmpty() && !liveReported) {
                liveReported = true
                val now = System.nanoTime()
                emit(Live((now - startedAt) / 1_000_000, (now - lostAt) / 1_000_000))
            }
        }

        private fun onSubscribed(frame: JSONObject) {
            val p = frame.getJSONObject("payload")
            val channel = p.getString("channel")
            val mode = p.getString("recovery")
            val cursor = cursors[channel] ?: return
            subRefs.remove(frame.optString("ref"))
            subscribeTries.remove(channel)
            subscribed.add(channel)
            val epoch = p.getString("epoch")
            val head = p.getLong("headSeq")
            val count = p.getLong("replayCount")
            emit(Subscribed(channel, mode, epoch, head, count))
            cursor.onSubscribed(mode, epoch, head)
            val at = cursor.position
            if (mode == "reset") {
                deliver(Reset(channel, epoch, head), cursor, cursor.beforeRecovery, Position(head, epoch), head)
            } else if (mode == "none" && at != null) {
                val round = cursor.round
                delivery.execute(Runnable { commit(cursor, round, at) })
            }
            if (count > 0) recovering[channel] = count else recovering.remove(channel)
            checkLive()
        }

        private fun onSnapshot(frame: JSONObject) {
            val channel = frame.getString("channel")
            val cursor = cursors[channel] ?: return
            val p = frame.getJSONObject("payload")
            val seq = p.getLong("seq")
            val epoch = frame.getString("epoch")
            deliver(Snapshot(channel, epoch, seq, p.get("state")), cursor, cursor.beforeRecovery, Position(seq, epoch), seq)
            cursor.onSnapshot(seq, epoch)
        }

        /** Returns true when the event went to the app (its permit is released after delivery). */
        private fun onEvent(frame: JSONObject): Boolean {
            val channel = frame.optString("channel")
            val cursor = cursors[channel] ?: return false
            val seq = frame.getLong("seq")
            val epoch = frame.getString("epoch")
            val id = frame.getString("id")
            var handed = false
            when (cursor.check(seq, epoch, id)) {
                Verdict.DELIVER -> {
                    cursor.commit(seq, id)
                    delivered += 1
                    val payload = frame.optJSONObject("payload") ?: JSONObject()
                    val event = ChannelEvent(channel, seq, epoch, id, frame.getString("type"), payload, frame.optLong("timestamp"))
                    deliver(event, cursor, Position(seq - 1, epoch), Position(seq, epoch), seq, release = true)
                    handed = true
                }
                Verdict.DUPLICATE -> duplicates += 1
                Verdict.GAP -> {
                    gaps += 1
                    val streak = pacer.trouble(channel, nowMs())
                    finish(this, CloseCodes.ABNORMAL, "sequence gap on $channel (have ${cursor.seq}, got $seq): resyncing", streak = streak)
                    return false
                }
            }
            if (recovering.containsKey(channel)) {
                val remaining = recovering[channel]
                if (remaining != null) {
                    if (remaining <= 1) {
                        recovering.remove(channel)
                        checkLive()
                    } else {
                        recovering[channel] = remaining - 1
                    }
                }
            }
            return handed
        }

        private fun onUnsubscribed(frame: JSONObject) {
            val p = frame.getJSONObject("payload")
            val channel = p.getString("channel")
            forget(channel)
            if (frame.optString("ref").isNotEmpty()) return // the app asked; it already forgot the channel
            val reason = if (p.has("reason") && !p.isNull("reason")) p.getString("reason") else null
            if (cursors.remove(channel) != null) {
                committed.remove(channel)
                emit(Unsubscribed(channel, reason), forgetLater(channel))
            } else {
                emit(Unsubscribed(channel, reason))
            }
            checkLive()
        }

        private fun onPublished(frame: JSONObject) {
            val entry = outbox.remove(frame.optString("ref")) ?: return
            val p = frame.getJSONObject("payload")
            settled(entry, PublishResult(entry.frameId, p.getString("channel"), p.getLong("seq"), p.getString("epoch")), null)
        }

        /** A refused frame: a publish, `auth` or `subscribe` refused retryably (`rate_limited`,
         *  `unavailable`, ...) is sent again after a jittered backoff that grows per request. */
        private fun onError(frame: JSONObject) {
            val p = frame.getJSONObject("payload")
            val ref = frame.optString("ref")
            val code = p.getString("code")
            val message = p.optString("message")
            val retryable = p.optBoolean("retryable", false)
            val entry = outbox[ref]
            if (entry != null) {
                val delay = options.backoff.retryDelayMs(code, retryable, entry.tries, rng)
                if (delay != null) {
                    entry.tries += 1
                    entry.sentOn = null
                    later(delay) { if (outbox[ref] === entry) sendPublish(entry) }
                } else {
                    outbox.remove(ref)
                    settled(entry, null, PublishRefusedException(code, message))
                }
                return
            }
            val authToken = authRefs.remove(ref)
            if (authToken != null) {
                val delay = options.backoff.retryDelayMs(code, retryable, authTries, rng)
                if (delay != null) {
                    authTries += 1
                    later(delay) { if (token == authToken) sendAuth(authToken) }
                    return
                }
            }
            val channel = subRefs.remove(ref)
            if (channel != null) {
                if (code == "already_subscribed") return
                forget(channel)
                val cursor = cursors[channel]
                val tries = subscribeTries[channel] ?: 0
                val delay = if (cursor != null) options.backoff.retryDelayMs(code, retryable, tries, rng) else null
                if (delay != null) {
                    subscribeTries[channel] = tries + 1
                    later(delay) { if (cursors[channel] === cursor) subscribe(cursor!!) }
                } else if (cursor != null) {
                    cursors.remove(channel)
                    committed.remove(channel)
                    emit(ServerError(code, message, channel), forgetLater(channel))
                    checkLive()
                    return
                }
            }
            emit(ServerError(code, message, channel))
        }
    }

    companion object {
        /** OkHttp ping interval until an `auth_ok` told us the server's heartbeat (the server's default). */
        const val DEFAULT_PING_MS = 25_000L
        /** The longest frame id the server accepts (an app-supplied publish id included). */
        const val MAX_ID_LENGTH = 128

        private val RESERVED_CODE = Regex("^Code (\\d+) is reserved")
        private val log: Logger = Logger.getLogger("io.wsserver.client")

        private fun ms(millis: Long): Long = millis * 1_000_000

        private fun nowMs(): Long = System.nanoTime() / 1_000_000

        private fun daemons(name: String): ThreadFactory {
            val count = AtomicInteger()
            return ThreadFactory { task ->
                Thread(task, "$name-${count.incrementAndGet()}").apply { isDaemon = true }
            }
        }
    }
}
