// One channel's position and the pure rule for each arriving event: deliver it, drop it as a
// duplicate (by event id or by seq), or call it a gap (the client then resyncs with lastSeq).
package io.wsserver.client

import org.json.JSONObject

/** The fate of one arriving event. */
enum class Verdict { DELIVER, DUPLICATE, GAP }

/**
 * Tracks what the client has handed to the application on one channel. No I/O, not thread-safe
 * (the client calls it under its lock).
 */
class ChannelCursor(val channel: String, start: Position?) {
    var seq: Long? = start?.seq
        private set
    var epoch: String? = start?.epoch
        private set
    var awaitingSnapshot = false
        private set
    private val recent = object : LinkedHashMap<String, Boolean>() {
        override fun removeEldestEntry(eldest: MutableMap.MutableEntry<String, Boolean>?): Boolean = size > RECENT_IDS
    }

    val position: Position? get() = seq?.let { Position(it, epoch) }

    /** The `subscribe` payload that resumes from this position (live only when there is none). */
    fun subscribePayload(): JSONObject {
        val payload = JSONObject().put("channel", channel)
        val at = seq
        if (at != null) {
            payload.put("lastSeq", at)
            if (epoch != null) payload.put("epoch", epoch)
        }
        return payload
    }

    /** Applies a `subscribed` answer: replay continues from here; none/reset start at the head;
     *  snapshot waits for the `snapshot` frame. */
    fun onSubscribed(mode: String, newEpoch: String, headSeq: Long) {
        awaitingSnapshot = false
        when (mode) {
            "replay" -> {
                epoch = newEpoch
                if (seq == null) seq = 0
            }
            "snapshot" -> {
                awaitingSnapshot = true
                epoch = newEpoch
            }
            else -> {
                if (mode == "reset" || newEpoch != epoch) recent.clear()
                seq = headSeq
                epoch = newEpoch
            }
        }
    }

    fun onSnapshot(snapshotSeq: Long, newEpoch: String) {
        seq = snapshotSeq
        epoch = newEpoch
        awaitingSnapshot = false
        recent.clear()
    }

    /** Decides the fate of one event without changing the position (see [commit]). */
    fun check(eventSeq: Long, eventEpoch: String, eventId: String): Verdict {
        if (recent.containsKey(eventId)) return Verdict.DUPLICATE
        val at = seq ?: return Verdict.GAP
        if (awaitingSnapshot || eventEpoch != epoch) return Verdict.GAP
        if (eventSeq <= at) return Verdict.DUPLICATE
        if (eventSeq != at + 1) return Verdict.GAP
        return Verdict.DELIVER
    }

    /** Advances the position past an event handed to the application. */
    fun commit(eventSeq: Long, eventId: String) {
        seq = eventSeq
        recent[eventId] = true
    }

    companion object {
        /** Event ids remembered per channel to drop duplicates that carry an unexpected seq. */
        const val RECENT_IDS = 1024
    }
}
