// Coroutine-friendly publishing for Kotlin apps: suspends until the server acknowledged the
// publish (or it failed for good), using only the standard library's coroutine support.
package io.wsserver.client

import org.json.JSONObject
import kotlin.coroutines.resume
import kotlin.coroutines.resumeWithException
import kotlin.coroutines.suspendCoroutine

/** [WsClient.publish] that suspends until `published` arrives; throws a [WsClientException] otherwise.
 *  [id]: the app's idempotency key (see [WsClient.publish]). */
suspend fun WsClient.publishAwait(channel: String, event: String, data: JSONObject, id: String? = null): PublishResult =
    suspendCoroutine { cont ->
        try {
            publish(channel, event, data, object : PublishCallback {
                override fun onPublished(result: PublishResult) = cont.resume(result)
                override fun onFailed(error: WsClientException) = cont.resumeWithException(error)
            }, id)
        } catch (e: WsClientException) {
            cont.resumeWithException(e)
        }
    }
