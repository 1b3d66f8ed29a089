// One channel's position and the pure rule for each arriving event: deliver it, drop it as a
// duplicate (by event id or by seq), or call it a gap (the client then resyncs with lastSeq); and the
// rewind to the last processed position when the app failed on an event.
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
    /** Bumped by [rewind]: what was handed to the app in an earlier round and not yet processed is
     *  skipped, because it comes again. */
    var round = 0
        private set
    /** The position this subscription resumed from (before the last `subscribed`): where a
     *  snapshot or reset the app failed on is redelivered from. */
    var beforeRecovery: Position? = null
        private set
    /** Recent event ids and their seq. */
    private val recent = object : LinkedHashMap<String, Long>() {
        override fun removeEldestEntry(eldest: MutableMap.MutableEntry<String, Long>?): Boolean = size > RECENT_IDS
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
        beforeRecovery = position
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
        recent[eventId] = eventSeq
    }

    /**
     * Goes back to [to], the last position the app processed, after the app failed on what came
     * next: the events after it are forgotten (so their redelivery is not a duplicate) and [round]
     * moves on.
     */
    fun rewind(to: Position) {
        if (to.epoch != epoch) recent.clear() else recent.values.removeAll { it > to.seq }
        seq = to.seq
        epoch = to.epoch
        awaitingSnapshot = false
        round += 1
    }

    companion object {
        /** Event ids remembered per channel to drop duplicates that carry an unexpected seq. */
        const val RECENT_IDS = 1024
    }
}
