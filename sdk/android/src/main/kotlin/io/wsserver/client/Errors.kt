// What a publish can fail with (the client closed, the frame is too big, the outbox is full, the
// publish expired, the server refused it for good), and how the client reports failures it
// survived: an app callback or a store that threw.
package io.wsserver.client

import java.util.logging.Level
import java.util.logging.Logger

/** The base of every error the SDK reports. */
open class WsClientException(message: String) : Exception(message)

/** The client was closed (by the app or for good by the server) before the publish was acknowledged. */
class ClientClosedException(message: String) : WsClientException(message)

/** The frame exceeds the server's `maxMessageSize` (from `auth_ok`); it was never sent. */
class MessageTooBigException(message: String) : WsClientException(message)

/** The server refused the publish with a non-retryable `error` ([code], e.g. `forbidden`). */
class PublishRefusedException(val code: String, message: String) : WsClientException("$code: $message")

/** The outbox holds `maxPendingPublishes` unacknowledged publishes: this one was not taken. */
class OutboxFullException(message: String) : WsClientException(message)

/** The publish waited longer than `publishTtlMs` for its acknowledgement and was dropped. */
class PublishExpiredException(message: String) : WsClientException(message)

/** Where a failure the client survived came from. */
enum class ErrorSource {
    /** The [ClientListener] threw. For a [ChannelEvent], [Snapshot] or [Reset] the position was not
     *  committed and the client redelivers from the last committed one. */
    LISTENER,
    /** A [PublishCallback] threw. */
    PUBLISH_CALLBACK,
    /** The [TokenProvider] threw (the client retries with backoff). */
    TOKEN_PROVIDER,
    /** A [PositionStore] threw or could not write its file. */
    POSITION_STORE,
    /** An [OutboxStore] threw or could not write its file, or it held expired publishes. */
    OUTBOX_STORE
}

/** A failure the client survived: [source] failed with [error]; [action] says what the client did. */
data class ClientError(
    val source: ErrorSource,
    val error: Throwable,
    val action: String,
    val channel: String? = null,
    val seq: Long? = null
)

/**
 * Hears failures the client survived, on the thread that met them (the delivery executor for
 * listener and callback failures, a store's or a worker's thread otherwise). Keep it quick; what
 * it throws is logged and dropped. Default: a `java.util.logging` warning.
 */
interface ErrorListener {
    fun onError(error: ClientError)
}

internal object Failures {
    private val log: Logger = Logger.getLogger("io.wsserver.client")

    /** Errors that leave the JVM unfit to go on: rethrown, never swallowed. */
    fun isFatal(t: Throwable): Boolean = t is VirtualMachineError || t is ThreadDeath || t is LinkageError

    /** Runs app code [block]; returns what it threw (a fatal error is rethrown), or null. */
    inline fun guard(block: () -> Unit): Throwable? {
        try {
            block()
            return null
        } catch (t: Throwable) {
            if (isFatal(t)) throw t
            return t
        }
    }

    /** Tells [listener] (or the log) about [error]; never throws. */
    fun report(listener: ErrorListener?, error: ClientError) {
        if (listener == null) {
            log.log(Level.WARNING, "${error.source}: ${error.action}", error.error)
            return
        }
        val failed = guard { listener.onError(error) }
        if (failed != null) log.log(Level.WARNING, "the error listener threw on $error", failed)
    }
}
