// Client publishes not yet acknowledged: each keeps its frame id, so a resend after a
// reconnect is the same frame and the server stores it exactly once.
package io.wsserver.client

/** The server's acknowledgement of a publish: where the event landed. */
data class PublishResult(val id: String, val channel: String, val seq: Long, val epoch: String)

/** Told, on the delivery executor, how one publish ended. */
interface PublishCallback {
    fun onPublished(result: PublishResult)
    fun onFailed(error: WsClientException)
}

/** One publish awaiting its `published` answer. */
class Pending(val frameId: String, val wire: String, val callback: PublishCallback?) {
    /** Generation of the connection it was last sent on (null: not sent since the last retry). */
    var sentOn: Int? = null
}

/** Insertion-ordered pending publishes, keyed by frame id. Not thread-safe (the client locks). */
class Outbox {
    private val pending = LinkedHashMap<String, Pending>()

    val size: Int get() = pending.size

    operator fun get(frameId: String): Pending? = pending[frameId]

    fun add(entry: Pending) {
        pending[entry.frameId] = entry
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
