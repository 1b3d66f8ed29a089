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
import java.util.concurrent.Semaphore
import java.util.concurrent.ThreadFactory
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import java.util.logging.Level
import java.util.logging.Logger

/** How a [WsClient] behaves; every field has a default fit for a phone. */
class WsClientOptions(
    /** Where the listener and publish callbacks run, one at a time, in order (e.g. the main thread's
     *  executor). Default: a private daemon thread. */
    val deliveryExecutor: Executor? = null,
    /** Channel positions (default: in memory; [FilePositionStore] survives the process). */
    val positions: PositionStore = MemoryPositionStore(),
    /** Reconnect delays (default 0.5 s doubling to 20 s, full jitter). */
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
    val seed: Long? = null
)

/** Counters for monitoring and tests. */
data class ClientStats(
    val connects: Int,
    val reconnects: Int,
    val delivered: Long,
    val duplicatesDropped: Long,
    val gaps: Int,
    val publishesResent: Int
)

/**
 * A reconnecting client for one server URL (`ws://host:port/ws` or `wss://…`).
 *
 * Every [ClientEvent] reaches [listener] on the delivery executor, one at a time, in order. A
 * channel's position is saved in the [PositionStore] only after the listener returned for the
 * event, so an app killed mid-event gets it again. Thread-safe: call it from any thread.
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
    private val rng = options.seed?.let { Random(it) } ?: Random()
    private val baseHttp = options.okHttpClient ?: OkHttpClient()
    private val positions = options.positions
    private val cursors = LinkedHashMap<String, ChannelCursor>()
    private val committed = ConcurrentHashMap<String, Position>()
    private val outbox = Outbox()
    private val permits = Semaphore(options.maxQueuedEvents)
    private val waitingForApp = AtomicInteger()

    @Volatile
    var state: ConnectionState = ConnectionState.CONNECTING
        private set

    private var started = false
    private var stopped = false
    private var offline = false
    private var background = false
    private var generation = 0
    private var link: Link? = null
    private var connecting = false
    private var attempt = 0
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
        positions.forget(channel)
    }

    /**
     * Publishes through the outbox; [callback] hears the acknowledgement (or the final failure) on
     * the delivery executor. A publish interrupted by a drop is resent with the same frame id after
     * the reconnect, so it is stored exactly once. Returns the frame id.
     *
     * @throws MessageTooBigException the frame exceeds the server's `maxMessageSize` (never sent)
     * @throws ClientClosedException the client is closed
     */
    @JvmOverloads
    fun publish(channel: String, event: String, data: JSONObject, callback: PublishCallback? = null): String {
        val payload = JSONObject().put("channel", channel).put("event", event).put("data", data)
        val frame = Frames.make("publish", payload)
        val id = frame.getString("id")
        val wire = frame.toString()
        synchronized(lock) {
            if (stopped) throw ClientClosedException("the client is closed")
            val limit = maxMessageSize
            val size = Frames.sizeOf(wire)
            if (limit != null && size > limit) throw MessageTooBigException("publish frame of $size bytes > maxMessageSize $limit")
            val entry = Pending(id, wire, callback)
            outbox.add(entry)
            link?.let { if (it.authenticated) it.sendPublish(entry) }
        }
        return id
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

    /** The app came to the foreground: reconnect at once if waiting, or check that the open link still answers. */
    fun onForeground() = synchronized(lock) {
        background = false
        reconnectNowOrProbe()
    }

    /** The app went to the background; with `pauseInBackground` the link is closed until [onForeground]. */
    fun onBackground() = synchronized(lock) {
        background = true
        if (options.pauseInBackground) link?.let { finish(it, CloseCodes.NORMAL, "paused in the background", pause = true) }
    }

    /**
     * The device's connectivity changed (call it from a `ConnectivityManager.NetworkCallback`).
     * Unavailable: no reconnect attempts until it is back (no busy loop while offline).
     * Available (a new network, e.g. Wi-Fi → LTE): reconnect at once, or probe the open link.
     */
    @JvmOverloads
    fun onNetworkChanged(available: Boolean = true) = synchronized(lock) {
        offline = !available
        if (available) {
            reconnectNowOrProbe()
        } else {
            pendingConnect?.cancel(false)
            pendingConnect = null
        }
    }

    /** The position of [channel] the app has processed up to. */
    fun position(channel: String): Position? =
        committed[channel] ?: synchronized(lock) { if (cursors.containsKey(channel)) null else positions.load(channel) }

    /** Unacknowledged publishes. */
    val pendingPublishes: Int get() = synchronized(lock) { outbox.size }

    val stats: ClientStats
        get() = synchronized(lock) { ClientStats(connects, reconnects, delivered, duplicates, gaps, resent) }

    // ------------------------------------------------------------------ supervision (all under lock)

    private fun reconnectNowOrProbe() {
        if (stopped || !started) return
        val l = link
        if (l != null) {
            if (l.authenticated) l.probe()
            return
        }
        connectNow()
    }

    private fun connectNow() {
        if (stopped || !started || offline || (background && options.pauseInBackground)) return
        if (link != null || connecting) return
        pendingConnect?.cancel(false)
        pendingConnect = null
        connecting = true
        val gen = ++generation
        val startedAt = System.nanoTime()
        val reason = tokenReason
        state = ConnectionState.CONNECTING
        emit(Connecting(attempt))
        tokenFetch = workers.submit(Runnable {
            var token: String? = null
            var failure: Exception? = null
            try {
                token = tokenProvider.token(reason)
            } catch (e: InterruptedException) {
                return@Runnable
            } catch (e: Exception) {
                failure = e
            }
            synchronized(lock) {
                if (gen != generation || stopped) return@Runnable
                tokenFetch = null
                connecting = false
                when {
                    failure != null -> {
                        log.log(Level.WARNING, "token provider failed", failure)
                        afterLinkEnded(CloseCodes.ABNORMAL, "token provider failed: $failure", false, null)
                    }
                    token == null -> shutDown(CloseCodes.AUTH_FAILED, "the token provider has no token")
                    token == rejected -> shutDown(CloseCodes.AUTH_FAILED, "the token provider returned the token the server rejected")
                    else -> openLink(gen, token, startedAt)
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

    /** Ends [l] (once) and decides what comes next; [pause] ends it without a reconnect timer. */
    private fun finish(l: Link, code: Int, reason: String, cancel: Boolean = true, pause: Boolean = false) {
        if (l.ended) return
        l.end()
        if (pause) l.ws.close(CloseCodes.NORMAL, reason) else if (cancel) l.ws.cancel()
        if (link === l) link = null
        lostAt = System.nanoTime()
        if (stopped) return
        if (pause) {
            state = ConnectionState.RECONNECTING
            emit(Reconnecting(attempt, 0, code, reason, Reconnect.AT_ONCE, true))
            return
        }
        afterLinkEnded(code, reason, l.authenticated, l.token)
    }

    private fun afterLinkEnded(code: Int, reason: String, authenticated: Boolean, token: String?) {
        val advice = CloseCodes.adviceFor(code)
        if (advice == Reconnect.NEVER) {
            shutDown(code, reason)
            return
        }
        if (authenticated) attempt = 0
        rejected = if (code == CloseCodes.AUTH_FAILED) token else null
        tokenReason = if (advice == Reconnect.NEW_TOKEN) TokenReason.REJECTED else TokenReason.CONNECT
        val atOnce = (advice == Reconnect.AT_ONCE || advice == Reconnect.NEW_TOKEN) && attempt == 0
        val delay = if (atOnce) 0L else options.backoff.delayMs(attempt, rng)
        attempt += 1
        reconnects += 1
        val waiting = offline || (background && options.pauseInBackground)
        state = ConnectionState.RECONNECTING
        log.info("reconnecting in $delay ms after $code $reason (attempt $attempt, $advice${if (waiting) ", waiting" else ""})")
        emit(Reconnecting(attempt, delay, code, reason, advice, waiting))
        if (!waiting) {
            pendingConnect = timer.schedule(Runnable {
                synchronized(lock) {
                    pendingConnect = null
                    connectNow()
                }
            }, delay, TimeUnit.MILLISECONDS)
        }
    }

    private fun shutDown(code: Int, reason: String) {
        stopped = true
        state = ConnectionState.CLOSED
        pendingConnect?.cancel(false)
        tokenFetch?.cancel(true)
        val error = ClientClosedException("client closed: $code $reason")
        for (entry in outbox.drain()) fail(entry, error)
        emit(Closed(code, reason)) { ownExecutor?.shutdown() }
        timer.shutdown()
        workers.shutdownNow()
    }

    // ------------------------------------------------------------------ delivery

    private fun emit(event: ClientEvent, after: (() -> Unit)? = null) {
        delivery.execute(Runnable {
            try {
                listener.onEvent(event)
            } catch (e: RuntimeException) {
                log.log(Level.WARNING, "the listener threw on $event", e)
            } finally {
                after?.invoke()
            }
        })
    }

    private fun fail(entry: Pending, error: WsClientException) {
        val callback = entry.callback ?: return
        delivery.execute(Runnable { callback.onFailed(error) })
    }

    /** Records [position] once the app processed what led to it (runs on the delivery executor). */
    private fun commitLater(channel: String, cursor: ChannelCursor, position: Position): () -> Unit = {
        val current = synchronized(lock) { cursors[channel] === cursor }
        if (current) {
            committed[channel] = position
            positions.save(channel, position)
        }
    }

    private fun forgetLater(channel: String): () -> Unit = { positions.forget(channel) }

    // ------------------------------------------------------------------ one link

    /** One WebSocket's protocol state. Callbacks from a link that ended are ignored, so nothing
     *  started for it (a token refresh in particular) can act on the next one. */
    private inner class Link(val gen: Int, var token: String, val startedAt: Long, val lostAt: Long) : WebSocketListener() {
        lateinit var ws: WebSocket
        var authenticated = false
        var ended = false
        var heartbeatMs = 0L
        @Volatile
        var lastReceived = System.nanoTime()
        var pingedAt: Long? = null
        var probeSentAt: Long? = null
        val subscribed = HashSet<String>()
        val recovering = HashMap<String, Long?>()
        val subRefs = HashMap<String, String>()
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
            val auth = Frames.make("auth", JSONObject().put("token", token))
            webSocket.send(auth.toString())
            Unit
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
                "auth_ok" -> onAuthOk(frame.getJSONObject("payload"))
                "token_expiring" -> onTokenExpiring()
                "subscribed" -> onSubscribed(frame)
                "snapshot" -> onSnapshot(frame)
                "unsubscribed" -> onUnsubscribed(frame)
                "published" -> onPublished(frame)
                "error" -> onError(frame)
                else -> Unit // pong (any frame is a sign of life) and types this SDK does not know
            }
        }

        private fun onAuthOk(p: JSONObject) {
            maxMessageSize = p.getInt("maxMessageSize")
            if (authenticated) return // a refresh was accepted
            authenticated = true
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
                val fresh = try {
                    tokenProvider.token(TokenReason.EXPIRING)
                } catch (e: InterruptedException) {
                    return@Runnable
                } catch (e: Exception) {
                    log.log(Level.WARNING, "token provider failed on refresh", e)
                    null
                }
                synchronized(lock) {
                    refresh = null
                    if (fresh != null && !ended && link === this) {
                        token = fresh
                        send(Frames.make("auth", JSONObject().put("token", fresh)).toString())
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
            val limit = maxMessageSize
            if (limit != null && Frames.sizeOf(entry.wire) > limit) {
                outbox.remove(entry.frameId)
                fail(entry, MessageTooBigException("publish frame > maxMessageSize $limit"))
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
            subscribed.add(channel)
            val epoch = p.getString("epoch")
            val head = p.getLong("headSeq")
            val count = p.getLong("replayCount")
            emit(Subscribed(channel, mode, epoch, head, count))
            cursor.onSubscribed(mode, epoch, head)
            val at = cursor.position
            if (mode == "reset") {
                emit(Reset(channel, epoch, head), commitLater(channel, cursor, Position(head, epoch)))
            } else if (mode == "none" && at != null) {
                delivery.execute(Runnable { commitLater(channel, cursor, at)() })
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
            emit(Snapshot(channel, epoch, seq, p.get("state")), commitLater(channel, cursor, Position(seq, epoch)))
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
                    val save = commitLater(channel, cursor, Position(seq, epoch))
                    emit(event) {
                        permits.release()
                        save()
                    }
                    handed = true
                }
                Verdict.DUPLICATE -> duplicates += 1
                Verdict.GAP -> {
                    gaps += 1
                    finish(this, CloseCodes.ABNORMAL, "sequence gap on $channel (have ${cursor.seq}, got $seq): resyncing")
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
            val result = PublishResult(entry.frameId, p.getString("channel"), p.getLong("seq"), p.getString("epoch"))
            val callback = entry.callback ?: return
            delivery.execute(Runnable { callback.onPublished(result) })
        }

        private fun onError(frame: JSONObject) {
            val p = frame.getJSONObject("payload")
            val ref = frame.optString("ref")
            val code = p.getString("code")
            val message = p.optString("message")
            val retryable = p.optBoolean("retryable", false)
            val entry = outbox[ref]
            if (entry != null) {
                if (retryable) {
                    entry.sentOn = null
                    retries += timer.schedule(Runnable {
                        synchronized(lock) { if (outbox[ref] === entry) sendPublish(entry) }
                    }, RETRY_DELAY_MS, TimeUnit.MILLISECONDS)
                } else {
                    outbox.remove(ref)
                    fail(entry, PublishRefusedException(code, message))
                }
                return
            }
            val channel = subRefs.remove(ref)
            if (channel != null) {
                if (code == "already_subscribed") return
                forget(channel)
                val cursor = cursors[channel]
                if (retryable && cursor != null) {
                    retries += timer.schedule(Runnable {
                        synchronized(lock) { if (!ended && cursors[channel] === cursor) subscribe(cursor) }
                    }, RETRY_DELAY_MS, TimeUnit.MILLISECONDS)
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
        /** Delay before a publish or subscribe refused with a retryable error is sent again. */
        const val RETRY_DELAY_MS = 1_000L

        private val RESERVED_CODE = Regex("^Code (\\d+) is reserved")
        private val log: Logger = Logger.getLogger("io.wsserver.client")

        private fun ms(millis: Long): Long = millis * 1_000_000

        private fun daemons(name: String): ThreadFactory {
            val count = AtomicInteger()
            return ThreadFactory { task ->
                Thread(task, "$name-${count.incrementAndGet()}").apply { isDaemon = true }
            }
        }
    }
}
