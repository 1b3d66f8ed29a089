// Errors the SDK raises to the application, all from `Client.publish`: connection problems
// themselves are never thrown, they are events (`reconnecting`, `closed`).

/** Base class of the SDK's errors. */
export class ClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
    Object.setPrototypeOf(this, new.target.prototype); // instanceof across down-levelled builds
  }
}

/** The client closed before the operation completed. A publish stays in a durable outbox store
 *  (`ClientOptions.outbox.store`): the next client on that store sends it. */
export class ClientClosed extends ClientError {}

/** The server refused a publish for good (e.g. `forbidden`); `code` is the error code. */
export class PublishRefused extends ClientError {
  constructor(
    readonly code: string,
    readonly reason: string,
  ) {
    super(`${code}: ${reason}`);
  }
}

/** The frame exceeds the server's `maxMessageSize`; it was not sent (and is never retried). */
export class MessageTooBig extends ClientError {}

/** The outbox holds `outbox.maxEntries` unacknowledged publishes already: this one was not taken. */
export class OutboxFull extends ClientError {}

/** The publish waited longer than `outbox.ttl` without being sent and acknowledged: given up. */
export class PublishExpired extends ClientError {}
