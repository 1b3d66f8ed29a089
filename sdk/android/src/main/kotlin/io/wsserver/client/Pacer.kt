// When the client connects next. Failures grow the wait; only a link that stayed up for a while, or
// a real wake (foreground, network back), forgets them, never a mere auth_ok. A channel whose
// trouble (a sequence gap, a listener that threw) repeats escalates on its own.
package io.wsserver.client

import java.util.Random

/**
 * The reconnect schedule of one client: pure (the caller passes the clock) and not thread-safe
 * (the client calls it under its lock).
 *
 * - [attempt] counts the links that failed since the last stable one (or wake): a link that ends
 *   less than [stableLinkMs] after its `auth_ok` counts as a failure, so a server that closes every
 *   link right after `auth_ok` sees the backoff grow instead of a zero-delay loop.
 * - An "at once" advice (1001, 4008, 4009, a lost link, `NEW_TOKEN` codes) draws from
 *   [Backoff.atOnceMs] only for the first failure; after that it backs off like any other.
 * - Offline (the device reports no network): every draw is at the cap, so attempts go on, slowly.
 * - Trouble on one channel less than [troubleMemoryMs] after its previous trouble is a repeat: the
 *   n-th repeat waits at least like failure n, however stable the links in between were.
 */
class ReconnectPacer(
    val backoff: Backoff,
    val stableLinkMs: Long,
    private val rng: Random,
    val troubleMemoryMs: Long = DEFAULT_TROUBLE_MEMORY_MS
) {
    /** Failures since the last stable link or wake (0: the next attempt is the first). */
    var attempt = 0
        private set
    private val troubleStreak = HashMap<String, Int>()
    private val troubleAt = HashMap<String, Long>()

    /**
     * Records trouble on [channel] at [nowMs] and returns its streak (1 for the first trouble, or
     * the first after a quiet [troubleMemoryMs]).
     */
    fun trouble(channel: String, nowMs: Long): Int {
        val last = troubleAt[channel]
        val streak = if (last != null && nowMs - last < troubleMemoryMs) (troubleStreak[channel] ?: 0) + 1 else 1
        troubleStreak[channel] = streak
        troubleAt[channel] = nowMs
        return streak
    }

    /**
     * The link (or attempt) ended at [nowMs] with [advice]; it got `auth_ok` at [upSinceMs] (null:
     * never). Returns the delay before the next attempt and counts the failure. [streak] is the
     * trouble streak of the channel that ended it (0: none).
     */
    fun linkEnded(nowMs: Long, upSinceMs: Long?, advice: Reconnect, offline: Boolean, streak: Int = 0): Long {
        if (upSinceMs != null && nowMs - upSinceMs >= stableLinkMs) attempt = 0
        val n = maxOf(attempt, streak - 1)
        val delay = when {
            offline -> backoff.delayMs(Int.MAX_VALUE, rng)
            n == 0 && (advice == Reconnect.AT_ONCE || advice == Reconnect.NEW_TOKEN) -> backoff.atOnceDelayMs(rng)
            else -> backoff.delayMs(n, rng)
        }
        attempt = n + 1
        return delay
    }

    /** A real wake (foreground, a network back): failures are forgotten; returns the delay before
     *  the first attempt, short but jittered (phones wake together when a network comes back). */
    fun wake(): Long {
        attempt = 0
        return backoff.atOnceDelayMs(rng)
    }

    companion object {
        /** Trouble on a channel within a minute of the previous one is a repeat. */
        const val DEFAULT_TROUBLE_MEMORY_MS = 60_000L
    }
}
