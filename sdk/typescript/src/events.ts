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

/** A connection attempt starts (`attempt` 0 is the first since the last success). */
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

/** The link ended with `code`; the next attempt starts after `delay` ms. */
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

/** The subscription ended because the server withdrew it (e.g. a refreshed token no longer allows it). */
export interface UnsubscribedEvent {
  kind: "unsubscribed";
  channel: string;
  reason: string | null;
}

/** The server refused a frame the SDK sent (not a publish: those reject `publish`), or the SDK
 *  met a problem it recovers from (an undecodable frame, a failing token provider or position store). */
export interface ErrorEvent {
  kind: "error";
  code: string;
  message: string;
  channel: string | null;
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
  | UnsubscribedEvent
  | ErrorEvent;

export type ClientEventKind = ClientEvent["kind"];
export type EventOfKind<K extends ClientEventKind> = Extract<ClientEvent, { kind: K }>;
