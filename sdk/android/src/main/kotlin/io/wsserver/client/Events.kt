// What the client tells the application: connection states and the events it delivers,
// one ordered stream of ClientEvent objects handed to the app's ClientListener.
package io.wsserver.client

import org.json.JSONObject

/** The client's connection state ([WsClient.state]). */
enum class ConnectionState(val wire: String) {
    /** Opening a link and authenticating. */
    CONNECTING("connecting"),
    /** `auth_ok` received; subscriptions are being (re)established. */
    CONNECTED("connected"),
    /** The link ended; waiting before the next attempt (or for the network / the foreground). */
    RECONNECTING("reconnecting"),
    /** Final: closed by the app, by a NEVER close code, or the SDK gave up. */
    CLOSED("closed")
}

/** Why the client asks the application's token provider for a token. */
enum class TokenReason {
    /** A new connection is about to authenticate. */
    CONNECT,
    /** The server sent `token_expiring`: refresh in-band on this connection. */
    EXPIRING,
    /** The last connection ended with 4001/4002: a new token is needed. */
    REJECTED
}

/** Everything the client reports, in the order it happened. */
sealed class ClientEvent

/** A connection attempt starts ([attempt]: failed links since the last stable one or wake; 0 is the first). */
data class Connecting(val attempt: Int) : ClientEvent()

/** The server accepted the token (`auth_ok`). */
data class Connected(val sessionId: String, val userId: String, val heartbeatIntervalMs: Long) : ClientEvent()

/**
 * The link ended with [code]; the next attempt starts after [delayMs] (always drawn, never 0). With
 * [waiting] true (paused in the background with `pauseInBackground`) the client does not retry by
 * itself: it waits for `onForeground()`. Offline is not waiting: attempts go on at the backoff cap.
 */
data class Reconnecting(
    val attempt: Int,
    val delayMs: Long,
    val code: Int,
    val reason: String,
    val advice: Reconnect,
    val waiting: Boolean
) : ClientEvent()

/** Final state: the client will not reconnect. */
data class Closed(val code: Int, val reason: String) : ClientEvent()

/** Every subscribed channel finished its recovery on this connection: the app is caught up.
 *  [catchUpMs] from the start of this connection attempt, [downtimeMs] since the previous link was lost. */
data class Live(val catchUpMs: Long, val downtimeMs: Long) : ClientEvent()

/** The server (re)established a subscription; [mode] is `replay`, `snapshot`, `reset` or `none`. */
data class Subscribed(val channel: String, val mode: String, val epoch: String, val headSeq: Long, val replayCount: Long) :
    ClientEvent()

/** Replace the channel's state with [state] (as parsed by org.json, usually a JSONObject), as of
 *  [seq]; events after [seq] follow. */
data class Snapshot(val channel: String, val epoch: String, val seq: Long, val state: Any) : ClientEvent()

/** The channel's missed events are gone and no snapshot exists: reload its state from the
 *  application's backend. Live events after [headSeq] follow. */
data class Reset(val channel: String, val epoch: String, val headSeq: Long) : ClientEvent()

/** One application event, delivered once, in seq order. */
data class ChannelEvent(
    val channel: String,
    val seq: Long,
    val epoch: String,
    val id: String,
    val type: String,
    val payload: JSONObject,
    val timestamp: Long
) : ClientEvent()

/** The subscription ended: the server withdrew it (e.g. a refreshed token no longer grants it). */
data class Unsubscribed(val channel: String, val reason: String?) : ClientEvent()

/** The server refused a frame the SDK sent (not a publish: those fail their callback). */
data class ServerError(val code: String, val message: String, val channel: String?) : ClientEvent()

/** Receives every [ClientEvent], one at a time and in order, on the client's delivery executor. */
interface ClientListener {
    fun onEvent(event: ClientEvent)
}

/** Supplies tokens. Called on a worker thread (it may block on the network); null means "no token". */
interface TokenProvider {
    fun token(reason: TokenReason): String?
}
