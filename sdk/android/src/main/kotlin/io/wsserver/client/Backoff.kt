// Reconnect delays: exponential growth with "full jitter" (a uniform draw below the ceiling),
// so that thousands of phones cut off together do not come back together.
package io.wsserver.client

import java.util.Random

/** Full-jitter exponential backoff: attempt `n` waits `uniform(0, min(cap, base * 2^n))` ms. */
class Backoff(val baseMs: Long = 500, val capMs: Long = 20_000) {
    init {
        require(baseMs > 0 && capMs >= baseMs) { "need 0 < baseMs <= capMs" }
    }

    /** The largest delay attempt [attempt] (0-based) may draw. */
    fun ceilingMs(attempt: Int): Long {
        val shift = attempt.coerceIn(0, 30)
        val grown = baseMs.toDouble() * Math.pow(2.0, shift.toDouble())
        return if (grown >= capMs) capMs else grown.toLong()
    }

    /** A delay for attempt [attempt], drawn from [rng]. */
    fun delayMs(attempt: Int, rng: Random): Long = (rng.nextDouble() * ceilingMs(attempt)).toLong()
}
