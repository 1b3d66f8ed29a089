// What a publish can fail with: the client closed, the frame is too big to send, or the
// server refused it for good.
package io.wsserver.client

/** The base of every error the SDK reports. */
open class WsClientException(message: String) : Exception(message)

/** The client was closed (by the app or for good by the server) before the publish was acknowledged. */
class ClientClosedException(message: String) : WsClientException(message)

/** The frame exceeds the server's `maxMessageSize` (from `auth_ok`); it was never sent. */
class MessageTooBigException(message: String) : WsClientException(message)

/** The server refused the publish with a non-retryable `error` ([code], e.g. `forbidden`). */
class PublishRefusedException(val code: String, message: String) : WsClientException("$code: $message")
