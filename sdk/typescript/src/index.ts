// The package's public API: the reconnecting client, its events and errors, position stores,
// platform hooks, and the protocol's frame types generated from docs/schema.
export { Client, type ClientOptions, type SubscribeOptions, type TokenProvider } from "./client.js";
export type { ClientStats } from "./connection.js";
export { Reconnect, CLOSE_ADVICE, adviceFor } from "./codes.js";
export { DEFAULT_BACKOFF, backoffCeiling, backoffDelay, type Backoff } from "./backoff.js";
export { ChannelCursor, type Verdict } from "./cursor.js";
export { ClientError, ClientClosed, PublishRefused, MessageTooBig } from "./errors.js";
export type * from "./events.js";
export type { PublishResult } from "./outbox.js";
export {
  MemoryPositionStore,
  WebStoragePositionStore,
  AsyncStoragePositionStore,
  type Position,
  type PositionStore,
  type StorageLike,
  type AsyncStorageLike,
} from "./positions.js";
export { attachBrowserHooks, attachAppStateHooks, type AppStateLike, type Reconnectable } from "./hooks.js";
export type { WebSocketLike, WebSocketConstructor } from "./socket.js";
export type * from "./protocol.js";
