// An OutboxStore in one append-only journal file: a publish is on disk (in the page cache, which
// outlives the process) before its frame is first sent, so a process the OS killed resends it from
// the next client with the same id, and the server stores it once.
package io.wsserver.client

import org.json.JSONException
import org.json.JSONObject
import java.io.File
import java.io.FileOutputStream
import java.io.IOException

/**
 * Keeps pending publishes in [file] (e.g. `File(context.filesDir, "ws-outbox.jsonl")`), one JSON line
 * per change: `{"add": {id, wire, at}}` or `{"remove": id}`. An add or remove is one small append
 * (no rewrite, no fsync: it must outlive the process, not a power cut); the journal is rewritten
 * (temporary file + rename) when it holds far more lines than live publishes, and on [load]. A line
 * torn by a kill mid-append is skipped. Thread-safe.
 */
class FileOutboxStore(private val file: File) : OutboxStore {
    private val live = LinkedHashMap<String, StoredPublish>()
    private var lines = 0

    @Synchronized
    override fun load(): List<StoredPublish> {
        live.clear()
        lines = 0
        if (file.exists()) {
            for (line in file.readLines(Charsets.UTF_8)) {
                if (line.isBlank()) continue
                val record = try {
                    JSONObject(line)
                } catch (e: JSONException) {
                    continue // torn by a kill mid-append
                }
                val add = record.optJSONObject("add")
                if (add != null) {
                    val id = add.getString("id")
                    live[id] = StoredPublish(id, add.getString("wire"), add.getLong("at"))
                } else if (record.has("remove")) {
                    live.remove(record.getString("remove"))
                }
            }
        }
        compact()
        return live.values.toList()
    }

    @Synchronized
    override fun add(publish: StoredPublish) {
        append(addRecord(publish))
        live[publish.id] = publish
    }

    @Synchronized
    override fun remove(id: String) {
        if (live.remove(id) == null) return
        append(JSONObject().put("remove", id))
        if (lines > 2 * live.size + COMPACT_SLACK) compact()
    }

    /** Publishes in the store now. */
    @get:Synchronized
    val size: Int
        get() = live.size

    private fun addRecord(publish: StoredPublish): JSONObject =
        JSONObject().put("add", JSONObject().put("id", publish.id).put("wire", publish.wire).put("at", publish.createdAtMs))

    private fun append(record: JSONObject) {
        FileOutputStream(file, true).use { it.write((record.toString() + "\n").toByteArray(Charsets.UTF_8)) }
        lines += 1
    }

    private fun compact() {
        val tmp = File(file.path + ".tmp")
        tmp.writeText(live.values.joinToString("") { addRecord(it).toString() + "\n" }, Charsets.UTF_8)
        if (!tmp.renameTo(file)) throw IOException("cannot rename $tmp over $file")
        lines = live.size
    }

    companion object {
        /** Lines beyond twice the live publishes before the journal is rewritten. */
        const val COMPACT_SLACK = 64
    }
}
