// The package's public API: the reconnecting client, its events and errors, position and outbox
// stores, the lifecycle state machine and platform hooks, and the protocol's frame types generated
// from docs/schema.
export { Client, type ClientOptions, type PublishOptions, type SubscribeOptions, type TokenProvider } from "./client.js";
export type { ClientStats } from "./connection.js";
export { Reconnect, CLOSE_ADVICE, adviceFor } from "./codes.js";
export {
  DEFAULT_BACKOFF,
  DEFAULT_STABLE_AFTER,
  backoffCeiling,
  backoffDelay,
  reconnectDelay,
  type Backoff,
  type ReconnectInput,
} from "./backoff.js";
export { ChannelCursor, type Verdict } from "./cursor.js";
export { ClientError, ClientClosed, PublishRefused, MessageTooBig, OutboxFull, PublishExpired } from "./errors.js";
export type * from "./events.js";
export { DEFAULT_OUTBOX_LIMITS, type OutboxLimits, type PublishResult } from "./outbox.js";
export {
  MemoryOutboxStore,
  WebStorageOutboxStore,
  AsyncStorageOutboxStore,
  type OutboxRecord,
  type OutboxStore,
} from "./outbox-store.js";
export {
  MemoryPositionStore,
  WebStoragePositionStore,
  AsyncStoragePositionStore,
  type Position,
  type PositionStore,
  type StorageLike,
  type AsyncStorageLike,
} from "./positions.js";
export { Lifecycle, LifecycleMachine, type LifecycleAction, type LifecycleClient, type LifecycleState } from "./lifecycle.js";
export {
  attachBrowserHooks,
  attachAppStateHooks,
  attachNetInfo,
  type AppStateLike,
  type HasLifecycle,
  type NetInfoLike,
  type NetInfoStateLike,
} from "./hooks.js";
export type { WebSocketLike, WebSocketConstructor } from "./socket.js";
export type * from "./protocol.js";
