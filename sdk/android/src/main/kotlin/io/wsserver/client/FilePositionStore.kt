// A PositionStore in one small JSON file for apps that must resume from their last seq after the OS
// killed the process. Written behind, on the store's own thread, coalesced: `save` (called on the
// app's delivery executor, often the main thread) only updates a map.
package io.wsserver.client

import org.json.JSONObject
import java.io.File
import java.io.IOException
import java.util.concurrent.ScheduledThreadPoolExecutor
import java.util.concurrent.TimeUnit

/**
 * Keeps every channel's position in [file] (e.g. `File(context.filesDir, "ws-positions.json")`).
 *
 * - `save`/`forget` change a map and return; the store's own daemon thread writes the latest
 *   position of every channel, at most once per [minIntervalMs], so a 10,000-event replay is a
 *   handful of writes, not 10,000.
 * - Each write goes to a temporary file renamed over [file]: a kill mid-write leaves the previous
 *   positions, never a torn file. An app killed between two writes resumes from the older position
 *   and gets the newer events again (at least once across process death, never lost).
 * - [flush] writes what is pending now, on the caller's thread: call it from `onStop`.
 * - A failed write (disk full, a rename refused) never throws into the app: it goes to
 *   [errorListener] (default: the log) and the change stays pending for the next write or [flush].
 */
class FilePositionStore @JvmOverloads constructor(
    private val file: File,
    private val minIntervalMs: Long = 500,
    private val errorListener: ErrorListener? = null
) : PositionStore {
    private val positions = HashMap<String, Position>()
    private var version = 0L
    private var writtenVersion = 0L
    private var scheduled = false
    private var writtenAt: Long? = null
    private val writeLock = Any()
    private val writer = ScheduledThreadPoolExecutor(1) { task ->
        Thread(task, "wsclient-positions").apply { isDaemon = true }
    }

    /** Files written so far (monitoring, tests). */
    @Volatile
    var writes = 0
        private set

    init {
        require(minIntervalMs >= 0) { "minIntervalMs must be >= 0" }
        if (file.exists()) {
            val json = JSONObject(file.readText(Charsets.UTF_8))
            for (channel in json.keys()) {
                val entry = json.getJSONObject(channel)
                val epoch = if (entry.has("epoch")) entry.getString("epoch") else null
                positions[channel] = Position(entry.getLong("seq"), epoch)
            }
        }
    }

    @Synchronized
    override fun load(channel: String): Position? = positions[channel]

    @Synchronized
    override fun save(channel: String, position: Position) {
        positions[channel] = position
        changed()
    }

    @Synchronized
    override fun forget(channel: String) {
        if (positions.remove(channel) != null) changed()
    }

    /** Whether changes wait to be written. */
    @get:Synchronized
    val pending: Boolean
        get() = version != writtenVersion

    /**
     * Writes pending changes now, on this thread (waits for a write in progress). Returns true when
     * everything is on disk; false when the write failed (reported to the error listener).
     */
    fun flush(): Boolean = write()

    private fun changed() {
        version += 1
        if (scheduled) return
        scheduled = true
        val wait = writtenAt?.let { (it + minIntervalMs - nowMs()).coerceAtLeast(0) } ?: 0L
        writer.schedule(Runnable {
            synchronized(this) { scheduled = false }
            write()
        }, wait, TimeUnit.MILLISECONDS)
    }

    private fun write(): Boolean = synchronized(writeLock) {
        val json = JSONObject()
        val target: Long
        synchronized(this) {
            if (version == writtenVersion) return true
            target = version
            for ((channel, position) in positions) {
                val entry = JSONObject().put("seq", position.seq)
                if (position.epoch != null) entry.put("epoch", position.epoch)
                json.put(channel, entry)
            }
        }
        val failure = Failures.guard {
            val tmp = File(file.path + ".tmp")
            tmp.writeText(json.toString(), Charsets.UTF_8)
            if (!tmp.renameTo(file)) throw IOException("cannot rename $tmp over $file")
        }
        synchronized(this) {
            writtenAt = nowMs()
            if (failure == null) writtenVersion = maxOf(writtenVersion, target)
        }
        if (failure != null) {
            Failures.report(errorListener, ClientError(ErrorSource.POSITION_STORE, failure, "positions not written to $file; kept for the next write"))
            return false
        }
        writes += 1
        return true
    }

    private fun nowMs(): Long = System.nanoTime() / 1_000_000
}
