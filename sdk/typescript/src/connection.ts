// One WebSocket link's protocol state (auth → live): frame handlers, app-level ping for dead-link
// detection, and the in-band token refresh, all of which die with the link they belong to.
import { ABNORMAL } from "./codes.js";
import type { ChannelCursor } from "./cursor.js";
import { MessageTooBig, PublishRefused } from "./errors.js";
import type { ClientEvent, ConnectionState, TokenReason } from "./events.js";
import type { Outbox, Pending } from "./outbox.js";
import type { Position, PositionStore } from "./positions.js";
import { frame, type ClientFrame, type EventFrame, type ServerControlFrame } from "./protocol.js";
import { OPEN, type WebSocketLike } from "./socket.js";

/** ms before a publish or subscribe refused with a retryable error is sent again. */
export const RETRY_DELAY = 1000;
/** ms the closing handshake may take when the app closes the client. */
export const CLOSE_TIMEOUT = 2000;

/** How a connection ended. */
export interface ConnectionEnd {
  code: number;
  reason: string;
  authenticated: boolean;
}

/** Counters for monitoring and tests (read-only for the app). */
export interface ClientStats {
  connects: number;
  reconnects: number;
  delivered: number;
  duplicatesDropped: number;
  gaps: number;
  publishesResent: number;
}

/** What a connection needs from the client that owns it. */
export interface ConnectionHost {
  readonly cursors: Map<string, ChannelCursor>;
  readonly outbox: Outbox;
  readonly positions: PositionStore;
  readonly stats: ClientStats;
  readonly heartbeatSlack: number;
  readonly connectTimeout: number;
  maxMessageSize: number | null;
  current(): Connection | null;
  setState(state: ConnectionState): void;
  emit(event: ClientEvent): void;
  token(reason: TokenReason): Promise<string | null>;
  savePosition(channel: string, position: Position): void;
  forgetPosition(channel: string): void;
}

/** A monotonic clock in ms where the platform has one. */
export function now(): number {
  const perf = (globalThis as { performance?: { now?: () => number } }).performance;
  return perf?.now ? perf.now() : Date.now();
}

function noop(): void {}

type Handlers = { [F in ServerControlFrame as F["type"]]: (frame: F) => void };

export class Connection {
  authenticated = false;
  /** ms, from `auth_ok` */
  heartbeat = 0;
  /** channels a `subscribe` went out for on this link */
  readonly subscribed = new Set<string>();
  readonly ended: Promise<ConnectionEnd>;
  private end: ConnectionEnd | null = null;
  private resolveEnd!: (end: ConnectionEnd) => void;
  /** channel → replay events still due (null: awaiting `subscribed`) */
  private readonly recovering = new Map<string, number | null>();
  /** subscribe frame id → channel */
  private readonly subRefs = new Map<string, string>();
  private resubscribed = false;
  private liveReported = false;
  private refreshing = false;
  private lastReceived = now();
  private lastTick = now();
  private pingedAt: number | null = null;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private watchdog: ReturnType<typeof setInterval> | null = null;
  private readonly handlers: Handlers = {
    auth_ok: (f) => this.onAuthOk(f),
    token_expiring: () => this.onTokenExpiring(),
    subscribed: (f) => this.onSubscribed(f),
    snapshot: (f) => this.onSnapshot(f),
    unsubscribed: (f) => this.onUnsubscribed(f),
    published: (f) => void this.host.outbox.resolve(f.ref ?? "", f.payload),
    pong: noop, // any arriving frame already counted as a sign of life
    error: (f) => this.onError(f),
  };

  constructor(
    private readonly host: ConnectionHost,
    private readonly ws: WebSocketLike,
    readonly generation: number,
    token: string,
    private readonly started: number,
    private readonly lostAt: number,
  ) {
    this.ended = new Promise((resolve) => {
      this.resolveEnd = resolve;
    });
    this.later(host.connectTimeout, () => {
      if (!this.authenticated) this.finish(ABNORMAL, `no auth_ok within ${host.connectTimeout} ms`);
    });
    ws.onopen = () => {
      host.stats.connects++;
      this.lastReceived = now();
      this.send(frame("auth", { token }));
    };
    ws.onmessage = (event: { data: unknown }) => this.onMessage(event.data);
    ws.onclose = (event: { code?: number; reason?: string }) => {
      const code = typeof event.code === "number" && event.code !== 1005 ? event.code : ABNORMAL;
      this.finish(code, event.reason || (code === ABNORMAL ? "link lost" : `closed ${code}`), false);
    };
    ws.onerror = noop; // `close` follows with the code
  }

  /** Ends this link (once): stops its timers, detaches it from the socket and drops the socket. */
  finish(code: number, reason: string, closeSocket = true): void {
    if (this.end !== null) return;
    this.end = { code, reason, authenticated: this.authenticated };
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    if (this.watchdog !== null) clearInterval(this.watchdog);
    const ws = this.ws;
    ws.onopen = noop;
    ws.onmessage = noop;
    ws.onclose = noop;
    ws.onerror = noop;
    if (closeSocket) {
      try {
        if (ws.terminate) ws.terminate(); // Node `ws`: no closing handshake on a link we gave up on
        else ws.close(1000, "client reconnecting");
      } catch {
        // already closed
      }
    }
    this.resolveEnd(this.end);
  }

  get isEnded(): boolean {
    return this.end !== null;
  }

  /** The app closes the client: a closing handshake (1000), bounded by CLOSE_TIMEOUT. */
  closeByApp(): void {
    if (this.end !== null) return;
    this.ws.onclose = () => this.finish(1000, "closed by the application", false);
    this.later(CLOSE_TIMEOUT, () => this.finish(1000, "closed by the application"));
    try {
      this.ws.close(1000, "client closing");
    } catch {
      this.finish(1000, "closed by the application");
    }
  }

  /** "Reconnect now" while connected (network back, app in the foreground): the link may have died
   *  unseen while the device slept, so ping now and call it dead if nothing arrives within the slack. */
  probe(): void {
    if (!this.authenticated || this.end !== null) return;
    const sentAt = now();
    this.send(frame("ping", {}));
    this.later(this.host.heartbeatSlack, () => {
      if (this.lastReceived < sentAt) this.finish(ABNORMAL, "dead link: no answer to a probe");
    });
  }

  send(f: ClientFrame): void {
    this.sendWire(JSON.stringify(f));
  }

  /** Sends one frame; on a link that is not open it is dropped (the outbox or the resubscribe covers it). */
  sendWire(wire: string): void {
    if (this.end !== null || this.ws.readyState !== OPEN) return;
    try {
      this.ws.send(wire);
    } catch {
      // closing under us: `close` reports it
    }
  }

  subscribe(cursor: ChannelCursor): void {
    if (this.subscribed.has(cursor.channel)) return;
    this.subscribed.add(cursor.channel);
    this.recovering.set(cursor.channel, null);
    const f = frame("subscribe", cursor.subscribePayload());
    this.subRefs.set(f.id, cursor.channel);
    this.send(f);
  }

  forget(channel: string): void {
    this.subscribed.delete(channel);
    this.recovering.delete(channel);
  }

  sendPublish(entry: Pending): void {
    if (entry.sentOn === this.generation || this.end !== null) return;
    const limit = this.host.maxMessageSize;
    if (limit !== null && entry.bytes > limit) {
      this.host.outbox.fail(entry.frameId, new MessageTooBig(`publish frame of ${entry.bytes} bytes > maxMessageSize ${limit}`));
      return;
    }
    if (entry.sentOn !== null) this.host.stats.publishesResent++;
    entry.sentOn = this.generation;
    this.sendWire(entry.wire);
  }

  // ------------------------------------------------------------------ internals

  private later(delay: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.end === null) fn();
    }, delay);
    this.timers.add(timer);
  }

  /** After `auth_ok`: a `ping` once nothing has arrived for `heartbeatInterval`, and the link is dead
   *  after `heartbeatInterval + slack` of silence. A tick that comes late means the event loop was
   *  blocked (by the app, or a frozen tab): that is not the network's silence, so it counts as life. */
  private startWatchdog(): void {
    const interval = this.heartbeat;
    const slack = this.host.heartbeatSlack;
    const tick = Math.max(20, Math.min(500, interval / 4));
    this.lastTick = now();
    this.watchdog = setInterval(() => {
      const t = now();
      if (t - this.lastTick > tick + 1000) this.lastReceived = t;
      this.lastTick = t;
      const silent = t - this.lastReceived;
      if (silent > interval + slack) {
        this.finish(ABNORMAL, `dead link: nothing received for ${(silent / 1000).toFixed(1)}s`);
      } else if (silent > interval && (this.pingedAt === null || this.pingedAt < this.lastReceived)) {
        this.pingedAt = t;
        this.send(frame("ping", {}));
      }
    }, tick);
  }

  private onMessage(data: unknown): void {
    if (this.end !== null) return;
    this.lastReceived = now();
    if (typeof data !== "string") return; // the server sends text frames only
    let f: { type?: unknown };
    try {
      f = JSON.parse(data) as { type?: unknown };
    } catch (error) {
      this.host.emit({ kind: "error", code: "bad_frame", message: `undecodable server frame: ${String(error)}`, channel: null });
      return;
    }
    if (typeof f !== "object" || f === null || typeof f.type !== "string") {
      this.host.emit({ kind: "error", code: "bad_frame", message: "server frame without a type", channel: null });
      return;
    }
    if (f.type.includes(".")) {
      this.onEvent(f as EventFrame);
      return;
    }
    const handler = (this.handlers as Record<string, ((frame: never) => void) | undefined>)[f.type];
    if (handler !== undefined) handler(f as never);
  }

  private checkLive(): void {
    if (this.resubscribed && this.recovering.size === 0 && !this.liveReported && this.end === null) {
      this.liveReported = true;
      const t = now();
      this.host.emit({ kind: "live", catchUp: t - this.started, downtime: t - this.lostAt });
    }
  }

  private retryLater(fn: () => void): void {
    this.later(RETRY_DELAY, fn);
  }

  // ------------------------------------------------------------------ frame handlers

  private onAuthOk(f: Extract<ServerControlFrame, { type: "auth_ok" }>): void {
    const host = this.host;
    const p = f.payload;
    host.maxMessageSize = p.maxMessageSize;
    if (this.authenticated) return; // a refresh was accepted
    this.authenticated = true;
    this.heartbeat = p.heartbeatInterval;
    this.startWatchdog();
    host.setState("connected");
    host.emit({ kind: "connected", sessionId: p.sessionId, userId: p.userId, heartbeatInterval: p.heartbeatInterval });
    for (const cursor of [...host.cursors.values()]) {
      if (this.end !== null) return;
      if (host.cursors.get(cursor.channel) === cursor) this.subscribe(cursor);
    }
    for (const entry of host.outbox.unsent(this.generation)) this.sendPublish(entry);
    this.resubscribed = true;
    this.checkLive();
  }

  private onTokenExpiring(): void {
    if (this.refreshing) return;
    this.refreshing = true;
    // The refresh belongs to this link: a token that arrives after it ended is never sent on the next.
    this.host
      .token("expiring")
      .then((token) => {
        if (token !== null && this.end === null && this.host.current() === this) this.send(frame("auth", { token }));
      })
      .catch((error: unknown) => {
        if (this.end === null) this.host.emit({ kind: "error", code: "token_provider", message: String(error), channel: null });
      })
      .finally(() => {
        this.refreshing = false;
      });
  }

  private onSubscribed(f: Extract<ServerControlFrame, { type: "subscribed" }>): void {
    const host = this.host;
    const p = f.payload;
    const cursor = host.cursors.get(p.channel);
    if (cursor === undefined) return;
    this.subRefs.delete(f.ref ?? "");
    this.subscribed.add(p.channel);
    host.emit({ kind: "subscribed", channel: p.channel, mode: p.recovery, epoch: p.epoch, headSeq: p.headSeq, replayCount: p.replayCount });
    if (p.recovery === "reset") host.emit({ kind: "reset", channel: p.channel, epoch: p.epoch, headSeq: p.headSeq });
    cursor.onSubscribed(p.recovery, p.epoch, p.headSeq);
    const position = cursor.position;
    if ((p.recovery === "reset" || p.recovery === "none") && position !== null) host.savePosition(p.channel, position);
    if (p.replayCount > 0) this.recovering.set(p.channel, p.replayCount);
    else this.recovering.delete(p.channel);
    this.checkLive();
  }

  private onSnapshot(f: Extract<ServerControlFrame, { type: "snapshot" }>): void {
    const channel = f.channel;
    const cursor = this.host.cursors.get(channel);
    if (cursor === undefined) return;
    const { seq, state } = f.payload;
    this.host.emit({ kind: "snapshot", channel, epoch: f.epoch, seq, state: state as Record<string, unknown> });
    cursor.onSnapshot(seq, f.epoch);
    this.host.savePosition(channel, { seq, epoch: f.epoch });
  }

  private onEvent(f: EventFrame): void {
    const host = this.host;
    const channel = f.channel;
    const cursor = typeof channel === "string" ? host.cursors.get(channel) : undefined;
    if (cursor === undefined) return;
    const verdict = cursor.check(f.seq, f.epoch, f.id);
    if (verdict === "deliver") {
      cursor.commit(f.seq, f.id);
      host.stats.delivered++;
      host.emit({
        kind: "event",
        channel,
        seq: f.seq,
        epoch: f.epoch,
        id: f.id,
        type: f.type,
        payload: (f.payload ?? {}) as Record<string, unknown>,
        timestamp: f.timestamp,
      });
      host.savePosition(channel, { seq: f.seq, epoch: f.epoch });
    } else if (verdict === "duplicate") {
      host.stats.duplicatesDropped++;
    } else {
      host.stats.gaps++;
      this.finish(ABNORMAL, `sequence gap on ${channel} (have ${cursor.seq}, got ${f.seq}): resyncing`);
      return;
    }
    const remaining = this.recovering.get(channel);
    if (remaining !== undefined && remaining !== null) {
      if (remaining <= 1) {
        this.recovering.delete(channel);
        this.checkLive();
      } else {
        this.recovering.set(channel, remaining - 1);
      }
    }
  }

  private onUnsubscribed(f: Extract<ServerControlFrame, { type: "unsubscribed" }>): void {
    const channel = f.payload.channel;
    this.forget(channel);
    if (f.ref) return; // the app asked; it already forgot the channel
    if (this.host.cursors.delete(channel)) this.host.forgetPosition(channel);
    this.host.emit({ kind: "unsubscribed", channel, reason: f.payload.reason ?? null });
    this.checkLive();
  }

  private onError(f: Extract<ServerControlFrame, { type: "error" }>): void {
    const host = this.host;
    const ref = f.ref ?? "";
    const { code, message, retryable } = f.payload;
    const entry = host.outbox.get(ref);
    if (entry !== undefined) {
      if (retryable) {
        entry.sentOn = null;
        this.retryLater(() => this.sendPublish(entry));
      } else {
        host.outbox.fail(ref, new PublishRefused(code, message));
      }
      return;
    }
    const channel = this.subRefs.get(ref) ?? null;
    if (channel !== null) {
      this.subRefs.delete(ref);
      if (code === "already_subscribed") return;
      this.forget(channel);
      const cursor = host.cursors.get(channel);
      if (retryable && cursor !== undefined) {
        this.retryLater(() => this.subscribe(cursor));
      } else {
        if (host.cursors.delete(channel)) host.forgetPosition(channel);
        this.checkLive();
      }
    }
    host.emit({ kind: "error", code, message, channel });
  }
}
