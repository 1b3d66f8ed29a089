// What the client tells the application: connection states and the events it delivers, one
// stream of plain objects discriminated by `kind`, in the order they happened.
import type { Reconnect } from "./codes.js";
import type { SubscribedFrame } from "./protocol.js";

/** The client's connection state (`client.state`). */
export type ConnectionState =
  /** opening a link and authenticating */
  | "connecting"
  /** `auth_ok` received; subscriptions are being (re)established */
  | "connected"
  /** the link ended; waiting `delay` before the next attempt */
  | "reconnecting"
  /** final: closed by the app, by a NEVER close code, or the SDK gave up */
  | "closed";

/** Why the client asks the application's token provider for a token. */
export type TokenReason =
  /** a new connection is about to authenticate */
  | "connect"
  /** the server sent `token_expiring`: the token is sent in-band on this connection */
  | "expiring"
  /** the last connection ended with 4001/4002: a new token is needed */
  | "rejected";

export type RecoveryMode = SubscribedFrame["payload"]["recovery"];

/** A connection attempt starts; `attempt`: the failures in a row before it (0: the first since a
 *  link that stayed up `stableAfter`, or a wake). */
export interface ConnectingEvent {
  kind: "connecting";
  attempt: number;
}

/** The server accepted the token (`auth_ok`). */
export interface ConnectedEvent {
  kind: "connected";
  sessionId: string;
  userId: string;
  /** ms */
  heartbeatInterval: number;
}

/** The link ended with `code`; the next attempt starts after `delay` ms (a full-jitter draw, see
 *  `reconnectDelay`); `attempt`: the failures in a row, this one included. */
export interface ReconnectingEvent {
  kind: "reconnecting";
  attempt: number;
  delay: number;
  code: number;
  reason: string;
  advice: Reconnect;
}

/** Final state: the client will not reconnect. */
export interface ClosedEvent {
  kind: "closed";
  code: number;
  reason: string;
}

/** Every subscribed channel finished its recovery on this connection: the app is caught up.
 *  `catchUp`: ms since this connection attempt started; `downtime`: ms since the previous link was lost. */
export interface LiveEvent {
  kind: "live";
  catchUp: number;
  downtime: number;
}

/** The server (re)established a subscription (an answer, or unsolicited). */
export interface SubscribedEvent {
  kind: "subscribed";
  channel: string;
  mode: RecoveryMode;
  epoch: string;
  headSeq: number;
  replayCount: number;
}

/** Replace the channel's state with `state`, as of `seq`; events after `seq` follow. */
export interface SnapshotEvent {
  kind: "snapshot";
  channel: string;
  epoch: string;
  seq: number;
  state: Record<string, unknown>;
}

/** The channel's missed events are gone and no snapshot exists: reload its state from the
 *  application's backend. Live events after `headSeq` follow. */
export interface ResetEvent {
  kind: "reset";
  channel: string;
  epoch: string;
  headSeq: number;
}

/** One application event, delivered once, in seq order. */
export interface ChannelEvent {
  kind: "event";
  channel: string;
  seq: number;
  epoch: string;
  id: string;
  type: string;
  payload: Record<string, unknown>;
  timestamp: number;
}

/** The server acknowledged a publish (every one; for a publish restored from a durable outbox
 *  store this event is how the app learns its seq). */
export interface PublishedEvent {
  kind: "published";
  /** the publish frame's id */
  id: string;
  channel: string;
  seq: number;
  epoch: string;
}

/** The subscription ended because the server withdrew it (e.g. a refreshed token no longer allows it). */
export interface UnsubscribedEvent {
  kind: "unsubscribed";
  channel: string;
  reason: string | null;
}

/**
 * The server refused a frame the SDK sent, or the SDK met a problem it recovers from. `code` is the
 * server's error code (`rate_limited`, `forbidden`, …) or one of the SDK's: `listener` (an app
 * listener threw: `cause` holds what it threw), `gap` (a sequence gap: the client resyncs),
 * `bad_frame`, `token_provider`, `position_store`, `outbox_store`, `expired` (a publish restored
 * from the outbox store was older than its TTL).
 */
export interface ErrorEvent {
  kind: "error";
  code: string;
  message: string;
  channel: string | null;
  /** the refused frame's id (a publish's id), when there is one */
  id?: string;
  /** the event's seq, for `listener` and `gap` */
  seq?: number;
  /** ms until the SDK sends the refused request again, or redelivers the event (a retryable error,
   *  a failed listener); absent when it gives up or does not retry */
  retryIn?: number;
  /** what an app listener threw, for `listener`; what a store or provider threw */
  cause?: unknown;
}

export type ClientEvent =
  | ConnectingEvent
  | ConnectedEvent
  | ReconnectingEvent
  | ClosedEvent
  | LiveEvent
  | SubscribedEvent
  | SnapshotEvent
  | ResetEvent
  | ChannelEvent
  | PublishedEvent
  | UnsubscribedEvent
  | ErrorEvent;

export type ClientEventKind = ClientEvent["kind"];
export type EventOfKind<K extends ClientEventKind> = Extract<ClientEvent, { kind: K }>;
