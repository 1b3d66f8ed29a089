// The close codes of the wire protocol (CONTRACT §4) and what the client does after each.
// A copy of the server's table (wsserver/codes.py); CodesTest fails when the two disagree.
package io.wsserver.client

/** What the client does after a connection ends with a given close code. */
enum class Reconnect(val wire: String) {
    /** Stop: the application must act (or it asked to close). */
    NEVER("never"),
    /** Reconnect immediately (then with backoff if it keeps failing). */
    AT_ONCE("at_once"),
    /** Reconnect after a full-jitter exponential delay. */
    BACKOFF("backoff"),
    /** Ask the token provider for a new token, then reconnect. */
    NEW_TOKEN("new_token")
}

/** Close codes and their advice, exactly as the server's `CloseCode(...).reconnect`. */
object CloseCodes {
    const val NORMAL = 1000
    const val GOING_AWAY = 1001
    /** Reported by the SDK when the link ended without a close frame (RFC 6455 "abnormal"). */
    const val ABNORMAL = 1006
    const val MESSAGE_TOO_BIG = 1009
    const val INTERNAL_ERROR = 1011
    const val TRY_AGAIN_LATER = 1013
    const val AUTH_FAILED = 4001
    const val TOKEN_EXPIRED = 4002
    const val FORBIDDEN = 4003
    const val AUTH_TIMEOUT = 4008
    const val SLOW_CONSUMER = 4009
    const val RATE_LIMITED = 4029

    val ADVICE: Map<Int, Reconnect> = mapOf(
        NORMAL to Reconnect.NEVER,
        GOING_AWAY to Reconnect.AT_ONCE,
        MESSAGE_TOO_BIG to Reconnect.BACKOFF,
        INTERNAL_ERROR to Reconnect.BACKOFF,
        TRY_AGAIN_LATER to Reconnect.BACKOFF,
        AUTH_FAILED to Reconnect.NEW_TOKEN,
        TOKEN_EXPIRED to Reconnect.NEW_TOKEN,
        FORBIDDEN to Reconnect.NEVER,
        AUTH_TIMEOUT to Reconnect.AT_ONCE,
        SLOW_CONSUMER to Reconnect.AT_ONCE,
        RATE_LIMITED to Reconnect.BACKOFF
    )

    /** The advice for [code]; a lost link (1006) is retried at once, other unknown codes with backoff. */
    fun adviceFor(code: Int): Reconnect =
        ADVICE[code] ?: if (code == ABNORMAL) Reconnect.AT_ONCE else Reconnect.BACKOFF
}
