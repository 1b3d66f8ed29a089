// Where the client keeps each channel's position (lastSeq and epoch): the interface an app
// backs with its own storage, and the in-memory default.
package io.wsserver.client

import java.util.concurrent.ConcurrentHashMap

/** The last event the application processed on a channel: its `seq` and the log's `epoch`. */
data class Position(val seq: Long, val epoch: String?)

/**
 * Persists channel positions so an app killed by the OS resumes where it left off.
 *
 * `save` is called on the delivery executor right after the app's listener returned for an
 * event, snapshot or reset (never when it threw), so it must be quick and thread-safe; what a
 * store throws goes to the client's error listener and delivery goes on.
 */
interface PositionStore {
    /** The stored position of [channel], or null when there is none. */
    fun load(channel: String): Position?

    /** Records [position] as the latest of [channel]. */
    fun save(channel: String, position: Position)

    /** Drops [channel]'s position (the app unsubscribed, or the server withdrew it). */
    fun forget(channel: String)
}

/** The default [PositionStore]: a map, lost when the process ends. */
class MemoryPositionStore : PositionStore {
    private val positions = ConcurrentHashMap<String, Position>()

    override fun load(channel: String): Position? = positions[channel]

    override fun save(channel: String, position: Position) {
        positions[channel] = position
    }

    override fun forget(channel: String) {
        positions.remove(channel)
    }
}
