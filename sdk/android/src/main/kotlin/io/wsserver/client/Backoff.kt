// Reconnect and retry delays: exponential growth with "full jitter" (a uniform draw below the
// ceiling), so that thousands of phones cut off together do not come back together; and the rule
// for resending a request the server refused with a retryable error.
package io.wsserver.client

import java.util.Random

/**
 * Full-jitter exponential backoff: attempt `n` waits `uniform(0, min(cap, base * 2^n))` ms.
 * "At once" (close codes 1001, 4008, 4009, a lost link, a new token, a wake) still draws
 * `uniform(0, atOnceMs)`: never exactly 0, never the same for every phone.
 */
class Backoff @JvmOverloads constructor(
    val baseMs: Long = 500,
    val capMs: Long = 20_000,
    val atOnceMs: Long = minOf(250L, baseMs)
) {
    init {
        require(baseMs > 0 && capMs >= baseMs) { "need 0 < baseMs <= capMs" }
        require(atOnceMs in 1..capMs) { "need 0 < atOnceMs <= capMs" }
    }

    /** The largest delay attempt [attempt] (0-based) may draw. */
    fun ceilingMs(attempt: Int): Long {
        val shift = attempt.coerceIn(0, 30)
        val grown = baseMs.toDouble() * Math.pow(2.0, shift.toDouble())
        return if (grown >= capMs) capMs else grown.toLong()
    }

    /** A delay for attempt [attempt], drawn from [rng]. */
    fun delayMs(attempt: Int, rng: Random): Long = draw(ceilingMs(attempt), rng)

    /** A delay for an "at once" reconnect or a wake: `uniform(1, atOnceMs)`. */
    fun atOnceDelayMs(rng: Random): Long = draw(atOnceMs, rng)

    /**
     * Whether and when to resend a request (publish, subscribe, `auth`) the server refused with
     * `error` [code]: null for a final refusal, else a delay drawn like reconnect attempt [tries]
     * (the number of earlier refusals of the same request). `rate_limited` is retried even from a
     * server that forgot `retryable: true` (CONTRACT §4: SDKs retry it after a backoff).
     */
    fun retryDelayMs(code: String, retryable: Boolean, tries: Int, rng: Random): Long? =
        if (retryable || code == RATE_LIMITED) delayMs(tries, rng) else null

    private fun draw(ceiling: Long, rng: Random): Long = 1 + (rng.nextDouble() * (ceiling - 1)).toLong()

    companion object {
        const val RATE_LIMITED = "rate_limited"
    }
}
