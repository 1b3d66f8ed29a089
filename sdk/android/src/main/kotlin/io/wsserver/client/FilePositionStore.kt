// A PositionStore in one small JSON file, replaced atomically on each change, for apps that must
// resume from their last seq after the OS killed the process (a SharedPreferences-style store).
package io.wsserver.client

import org.json.JSONObject
import java.io.File
import java.io.IOException

/**
 * Keeps every channel's position in [file] (e.g. `File(context.filesDir, "ws-positions.json")`).
 *
 * Each change writes a temporary file and renames it over [file], so a kill mid-write leaves the
 * previous positions, never a torn file. At most one write per [minIntervalMs]: changes in between
 * are written by the next save or by [flush] (call it from `onStop`). An app killed between two
 * writes resumes from the older position and gets the newer events again.
 */
class FilePositionStore(private val file: File, private val minIntervalMs: Long = 0) : PositionStore {
    private val positions = HashMap<String, Position>()
    private var dirty = false
    private var writtenAt = 0L

    init {
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
        dirty = true
        if (System.nanoTime() / 1_000_000 - writtenAt >= minIntervalMs) flush()
    }

    @Synchronized
    override fun forget(channel: String) {
        if (positions.remove(channel) != null) {
            dirty = true
            flush()
        }
    }

    /** Writes pending changes now. */
    @Synchronized
    fun flush() {
        if (!dirty) return
        val json = JSONObject()
        for ((channel, position) in positions) {
            val entry = JSONObject().put("seq", position.seq)
            if (position.epoch != null) entry.put("epoch", position.epoch)
            json.put(channel, entry)
        }
        val tmp = File(file.path + ".tmp")
        tmp.writeText(json.toString(), Charsets.UTF_8)
        if (!tmp.renameTo(file)) throw IOException("cannot replace $file")
        dirty = false
        writtenAt = System.nanoTime() / 1_000_000
    }
}
