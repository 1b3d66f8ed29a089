// Builds the envelope of every frame the client sends (CONTRACT §2): type, a fresh UUID v4 id,
// the sender's clock in milliseconds, and the payload.
package io.wsserver.client

import org.json.JSONObject
import java.util.UUID

internal object Frames {
    fun make(type: String, payload: JSONObject, id: String = UUID.randomUUID().toString()): JSONObject =
        JSONObject().put("type", type).put("id", id).put("timestamp", System.currentTimeMillis()).put("payload", payload)

    fun sizeOf(wire: String): Int = wire.toByteArray(Charsets.UTF_8).size
}
