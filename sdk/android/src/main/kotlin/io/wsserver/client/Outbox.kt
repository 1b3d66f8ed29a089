// Client publishes not yet acknowledged: each keeps its frame id (the app's idempotency key, or a
// fresh UUID), so a resend after a reconnect, or after the process died, is the same frame and the
// server stores it exactly once. Bounded in size and age; persisted through a pluggable OutboxStore.
package io.wsserver.client

/** The server's acknowledgement of a publish: where the event landed. */
data class PublishResult(val id: String, val channel: String, val seq: Long, val epoch: String)

/** Told, on the delivery executor, how one publish ended. What it throws goes to the error listener. */
interface PublishCallback {
    fun onPublished(result: PublishResult)
    fun onFailed(error: WsClientException)
}

/** One publish awaiting its `published` answer. [createdAtMs]: wall clock, when the app made it. */
class Pending(val frameId: String, val wire: String, val createdAtMs: Long) {
    /** Everyone who asked for this publish (the same id published twice shares one entry). */
    val callbacks = ArrayList<PublishCallback>(1)
    /** Generation of the connection it was last sent on (null: not sent since the last retry). */
    var sentOn: Int? = null
    /** Retryable refusals so far (`rate_limited`, `unavailable`, ...): the next retry waits longer. */
    var tries = 0
}

/** Insertion-ordered pending publishes, keyed by frame id. Not thread-safe (the client locks). */
class Outbox(val maxSize: Int, val ttlMs: Long) {
    init {
        require(maxSize > 0 && ttlMs > 0) { "need maxSize > 0 and ttlMs > 0" }
    }

    private val pending = LinkedHashMap<String, Pending>()

    val size: Int get() = pending.size

    val full: Boolean get() = pending.size >= maxSize

    operator fun get(frameId: String): Pending? = pending[frameId]

    fun add(entry: Pending) {
        pending[entry.frameId] = entry
    }

    fun isExpired(entry: Pending, nowMs: Long): Boolean = nowMs - entry.createdAtMs > ttlMs

    /** Removes and returns the entries older than [ttlMs] at wall-clock [nowMs]: the oldest come
     *  first (insertion order), so this stops at the first one still young. */
    fun expire(nowMs: Long): List<Pending> {
        val old = ArrayList<Pending>()
        val entries = pending.values.iterator()
        while (entries.hasNext()) {
            val entry = entries.next()
            if (!isExpired(entry, nowMs)) break
            old.add(entry)
            entries.remove()
        }
        return old
    }

    /** Entries not yet sent on connection [generation], oldest first. */
    fun unsent(generation: Int): List<Pending> = pending.values.filter { it.sentOn != generation }

    fun remove(frameId: String): Pending? = pending.remove(frameId)

    fun drain(): List<Pending> {
        val all = pending.values.toList()
        pending.clear()
        return all
    }
}

/** A publish as an [OutboxStore] keeps it: the frame as sent (with its id) and when the app made it. */
data class StoredPublish(val id: String, val wire: String, val createdAtMs: Long)

/**
 * Keeps unacknowledged publishes across process death. The client calls [load] once (in its
 * constructor), [add] on the thread that calls `publish()` before the frame is first sent, and
 * [remove] on its own store thread once the publish was acknowledged or failed for good. What a
 * store throws goes to the error listener; the publish then lives on in memory only.
 *
 * Publishes still pending at `close()` (or a final close code) fail their callbacks and are removed:
 * the store carries publishes over a killed process, never over a deliberate close (the next client
 * may be another user's).
 */
interface OutboxStore {
    /** Every stored publish, oldest first. */
    fun load(): List<StoredPublish>

    fun add(publish: StoredPublish)

    fun remove(id: String)
}

/** The default [OutboxStore]: a map, lost with the process. */
class MemoryOutboxStore : OutboxStore {
    private val publishes = LinkedHashMap<String, StoredPublish>()

    @Synchronized
    override fun load(): List<StoredPublish> = publishes.values.toList()

    @Synchronized
    override fun add(publish: StoredPublish) {
        publishes[publish.id] = publish
    }

    @Synchronized
    override fun remove(id: String) {
        publishes.remove(id)
    }
}
