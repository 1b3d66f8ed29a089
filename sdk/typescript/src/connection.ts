// One WebSocket link's protocol state (auth → live): frame handlers, app-level ping and probe for
// dead-link detection, the in-band token refresh, retries of refused requests and channel resyncs,
// all of which die with the link they belong to.
import type { Backoff } from "./backoff.js";
import { ABNORMAL } from "./codes.js";
import type { ChannelCursor } from "./cursor.js";
import { MessageTooBig, PublishExpired, PublishRefused, type ClientError } from "./errors.js";
import type { ClientEvent, ConnectionState, TokenReason } from "./events.js";
import type { Outbox, Pending } from "./outbox.js";
import type { Position, PositionStore } from "./positions.js";
import { frame, type ClientFrame, type EventFrame, type ServerControlFrame } from "./protocol.js";
import { OPEN, type WebSocketLike } from "./socket.js";

/** ms the closing handshake may take when the app closes the client. */
export const CLOSE_TIMEOUT = 2000;
/** ms a probe's timer may fire late before its verdict waits for frames queued behind it. */
const LATE = 100;

/** How a connection ended. */
export interface ConnectionEnd {
  code: number;
  reason: string;
  authenticated: boolean;
  /** ms the link stayed up after `auth_ok` (0: never authenticated) */
  upFor: number;
  /** ended by a sequence gap: that channel's resyncs in a row (see `ChannelCursor.streak`) */
  streak?: number;
}

/** Counters for monitoring and tests (read-only for the app). */
export interface ClientStats {
  connects: number;
  reconnects: number;
  delivered: number;
  duplicatesDropped: number;
  gaps: number;
  publishesResent: number;
  /** deliveries (events, snapshots, resets) a listener threw on: each is redelivered */
  listenerFailures: number;
  /** requests the server refused retryably (`rate_limited`, `unavailable`, …) and the SDK resent */
  retries: number;
}

/** What a connection needs from the client that owns it. */
export interface ConnectionHost {
  readonly cursors: Map<string, ChannelCursor>;
  readonly outbox: Outbox;
  readonly positions: PositionStore;
  readonly stats: ClientStats;
  readonly backoff: Readonly<Backoff>;
  readonly heartbeatSlack: number;
  readonly probeTimeout: number;
  readonly connectTimeout: number;
  maxMessageSize: number | null;
  current(): Connection | null;
  setState(state: ConnectionState): void;
  /** Calls the app's listeners; a listener that throws is reported as an `error` event.
   *  Returns false when one threw. */
  emit(event: ClientEvent): boolean;
  /** Calls the app's listeners and returns what they threw, without reporting it. */
  dispatch(event: ClientEvent): unknown[];
  /** Reports listeners that threw on `event`, which is redelivered in `retryIn` ms. */
  listenerFailed(event: ClientEvent & { channel: string }, errors: unknown[], seq: number, retryIn: number): void;
  /** The full-jitter delay (ms) of backoff step `step`. */
  retryDelay(step: number): number;
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
type ErrorFrame = Extract<ServerControlFrame, { type: "error" }>;

export class Connection {
  authenticated = false;
  /** ms, from `auth_ok` */
  heartbeat = 0;
  /** channels a `subscribe` went out for on this link */
  readonly subscribed = new Set<string>();
  readonly ended: Promise<ConnectionEnd>;
  private end: ConnectionEnd | null = null;
  private resolveEnd!: (end: ConnectionEnd) => void;
  private authenticatedAt: number | null = null;
  private gapStreak: number | undefined;
  /** channel → replay events still due (null: awaiting `subscribed`) */
  private readonly recovering = new Map<string, number | null>();
  /** subscribe frame id → channel */
  private readonly subRefs = new Map<string, string>();
  /** channel → retryable refusals of its subscribe on this link */
  private readonly subRetries = new Map<string, number>();
  /** channels being resubscribed (a listener threw): their frames are dropped until `subscribed` */
  private readonly resyncing = new Set<string>();
  /** resync `unsubscribe` frame id → its channel, and the retryable refusals before it */
  private readonly resyncRefs = new Map<string, { channel: string; retries: number }>();
  private resubscribed = false;
  private liveReported = false;
  private refreshing = false;
  /** the in-band `auth` awaiting its answer: frame id and token */
  private refresh: { ref: string; token: string; retries: number } | null = null;
  /** a retry of everything unanswered is scheduled (an `error rate_limited` without `ref`) */
  private sweepDue = false;
  private sweeps = 0;
  private lastSweepAt = -Infinity;
  /** the last frame that actually arrived: the only evidence a probe accepts */
  private lastFrameAt = now();
  /** where the heartbeat watchdog counts silence from: a frame, or a late tick (a frozen loop) */
  private silenceFrom = now();
  private lastTick = now();
  private pingedAt: number | null = null;
  private probeSentAt: number | null = null;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private watchdog: ReturnType<typeof setInterval> | null = null;
  private readonly handlers: Handlers = {
    auth_ok: (f) => this.onAuthOk(f),
    token_expiring: () => this.onTokenExpiring(),
    subscribed: (f) => this.onSubscribed(f),
    snapshot: (f) => this.onSnapshot(f),
    unsubscribed: (f) => this.onUnsubscribed(f),
    published: (f) => this.onPublished(f),
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
      this.lastFrameAt = now();
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
    const upFor = this.authenticatedAt === null ? 0 : now() - this.authenticatedAt;
    this.end = { code, reason, authenticated: this.authenticated, upFor };
    if (this.gapStreak !== undefined) this.end.streak = this.gapStreak;
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
   *  unseen while the device slept, so ping now and call it dead unless a frame arrives within
   *  `probeTimeout`. Only frames count: never a timer tick. One probe in flight at a time. */
  probe(): void {
    if (!this.authenticated || this.end !== null) return;
    if (this.probeSentAt !== null && this.lastFrameAt < this.probeSentAt) return;
    const sentAt = now();
    this.probeSentAt = sentAt;
    this.send(frame("ping", {}));
    this.judgeProbe(sentAt, this.host.probeTimeout, true);
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
    this.sendSubscribe(cursor);
  }

  private sendSubscribe(cursor: ChannelCursor): void {
    const f = frame("subscribe", cursor.subscribePayload());
    this.subRefs.set(f.id, cursor.channel);
    this.send(f);
  }

  forget(channel: string): void {
    this.subscribed.delete(channel);
    this.recovering.delete(channel);
    this.resyncing.delete(channel);
    this.subRetries.delete(channel);
  }

  sendPublish(entry: Pending): void {
    if (entry.sentOn === this.generation || this.end !== null || !entry.ready) return;
    const limit = this.host.maxMessageSize;
    if (limit !== null && entry.bytes > limit) {
      this.failPublish(entry, new MessageTooBig(`publish frame of ${entry.bytes} bytes > maxMessageSize ${limit}`), "too_big");
      return;
    }
    if (entry.sentOn === null && this.host.outbox.expired(entry)) {
      const ttl = this.host.outbox.limits.ttl;
      this.failPublish(entry, new PublishExpired(`publish ${entry.frameId} not acknowledged within the outbox ttl (${ttl} ms)`), "expired");
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

  /** Dead unless a frame arrived since `sentAt`. A verdict timer that fires late (the event loop
   *  was frozen) first lets frames queued behind it in: they are the evidence, the tick is not. */
  private judgeProbe(sentAt: number, wait: number, mayDefer: boolean): void {
    const armed = now();
    this.later(wait, () => {
      if (this.lastFrameAt >= sentAt) return;
      if (mayDefer && now() - armed > wait + LATE) {
        this.judgeProbe(sentAt, LATE, false);
        return;
      }
      this.finish(ABNORMAL, `dead link: no answer to the probe in ${this.host.probeTimeout} ms`);
    });
  }

  /** After `auth_ok`: a `ping` once nothing has arrived for `heartbeatInterval`, and the link is dead
   *  after `heartbeatInterval + slack` of silence. A tick that comes late means the event loop was
   *  blocked (by the app, or a frozen tab): that silence is not the network's, so the watchdog counts
   *  from that tick (a probe does not: it is judged by frames only). */
  private startWatchdog(): void {
    const interval = this.heartbeat;
    const slack = this.host.heartbeatSlack;
    const tick = Math.max(20, Math.min(500, interval / 4));
    this.lastTick = now();
    this.watchdog = setInterval(() => {
      const t = now();
      if (t - this.lastTick > tick + 1000) this.silenceFrom = t;
      this.lastTick = t;
      const last = Math.max(this.lastFrameAt, this.silenceFrom);
      const silent = t - last;
      if (silent > interval + slack) {
        this.finish(ABNORMAL, `dead link: nothing received for ${(silent / 1000).toFixed(1)}s`);
      } else if (silent > interval && (this.pingedAt === null || this.pingedAt < last)) {
        this.pingedAt = t;
        this.send(frame("ping", {}));
      }
    }, tick);
  }

  private onMessage(data: unknown): void {
    if (this.end !== null) return;
    this.lastFrameAt = now();
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

  /**
   * A listener threw on an event, snapshot or reset of `cursor`'s channel: nothing was committed.
   * The channel is resubscribed from its committed position after a jittered delay that grows
   * while the channel keeps failing at the same place; its frames are dropped meanwhile.
   */
  private redeliver(cursor: ChannelCursor, event: ClientEvent & { channel: string }, errors: unknown[], seq: number, epoch: string): void {
    const channel = cursor.channel;
    const delay = this.host.retryDelay(cursor.troubleAt(seq, epoch) - 1);
    this.host.stats.listenerFailures++;
    if (this.host.cursors.get(channel) !== cursor) {
      this.host.listenerFailed(event, errors, seq, delay); // the listener unsubscribed: nothing to redeliver
      return;
    }
    this.resyncing.add(channel);
    this.recovering.set(channel, null);
    this.host.listenerFailed(event, errors, seq, delay);
    this.later(delay, () => this.unsubscribeToResync(cursor, 0));
  }

  private unsubscribeToResync(cursor: ChannelCursor, retries: number): void {
    const channel = cursor.channel;
    if (this.host.cursors.get(channel) !== cursor || !this.resyncing.has(channel)) return;
    const f = frame("unsubscribe", { channel });
    this.resyncRefs.set(f.id, { channel, retries });
    this.send(f);
  }

  /** Our resync's `unsubscribe` was answered (or refused: not subscribed): subscribe again. */
  private resubscribe(channel: string): void {
    if (!this.resyncing.delete(channel)) return;
    this.subscribed.delete(channel);
    const cursor = this.host.cursors.get(channel);
    if (cursor !== undefined) {
      this.subscribe(cursor);
    } else {
      this.recovering.delete(channel);
      this.checkLive();
    }
  }

  /** Reports a refused request the SDK sends again in `retryIn` ms. */
  private retrying(f: ErrorFrame, channel: string | null, retryIn: number, id?: string): void {
    this.host.stats.retries++;
    const event: ClientEvent = { kind: "error", code: f.payload.code, message: f.payload.message, channel, retryIn };
    if (id !== undefined) event.id = id;
    this.host.emit(event);
  }

  private failPublish(entry: Pending, error: ClientError, code: string): void {
    if (this.host.outbox.fail(entry.frameId, error) !== undefined && entry.restored) {
      // nobody holds a restored publish's promise: the event is how the app hears of it
      const { channel } = entry.record;
      this.host.emit({ kind: "error", code, message: error.message, channel, id: entry.frameId });
    }
  }

  // ------------------------------------------------------------------ frame handlers

  private onAuthOk(f: Extract<ServerControlFrame, { type: "auth_ok" }>): void {
    const host = this.host;
    const p = f.payload;
    host.maxMessageSize = p.maxMessageSize;
    if (this.authenticated) {
      this.refresh = null; // a refresh was accepted
      return;
    }
    this.authenticated = true;
    this.authenticatedAt = now();
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
        if (token !== null && this.end === null && this.host.current() === this) this.sendRefresh(token, 0);
      })
      .catch((error: unknown) => {
        if (this.end === null) this.host.emit({ kind: "error", code: "token_provider", message: String(error), channel: null, cause: error });
      })
      .finally(() => {
        this.refreshing = false;
      });
  }

  private sendRefresh(token: string, retries: number): void {
    const f = frame("auth", { token });
    this.refresh = { ref: f.id, token, retries };
    this.send(f);
  }

  private onSubscribed(f: Extract<ServerControlFrame, { type: "subscribed" }>): void {
    const host = this.host;
    const p = f.payload;
    const cursor = host.cursors.get(p.channel);
    this.subRefs.delete(f.ref ?? "");
    if (cursor === undefined || this.resyncing.has(p.channel)) return;
    this.subscribed.add(p.channel);
    this.subRetries.delete(p.channel);
    host.emit({ kind: "subscribed", channel: p.channel, mode: p.recovery, epoch: p.epoch, headSeq: p.headSeq, replayCount: p.replayCount });
    if (p.recovery === "reset") {
      const reset: ClientEvent & { channel: string } = { kind: "reset", channel: p.channel, epoch: p.epoch, headSeq: p.headSeq };
      const errors = host.dispatch(reset);
      if (errors.length > 0) {
        this.redeliver(cursor, reset, errors, p.headSeq, p.epoch); // the position stays before the reset
        return;
      }
    }
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
    if (cursor === undefined || this.resyncing.has(channel)) return;
    const { seq, state } = f.payload;
    const snapshot: ClientEvent & { channel: string } = { kind: "snapshot", channel, epoch: f.epoch, seq, state: state as Record<string, unknown> };
    const errors = this.host.dispatch(snapshot);
    if (errors.length > 0) {
      this.redeliver(cursor, snapshot, errors, seq, f.epoch);
      return;
    }
    cursor.onSnapshot(seq, f.epoch);
    if (this.host.cursors.get(channel) === cursor) this.host.savePosition(channel, { seq, epoch: f.epoch });
  }

  private onEvent(f: EventFrame): void {
    const host = this.host;
    const channel = f.channel;
    const cursor = typeof channel === "string" ? host.cursors.get(channel) : undefined;
    if (cursor === undefined || this.resyncing.has(channel)) return;
    const verdict = cursor.check(f.seq, f.epoch, f.id);
    if (verdict === "deliver") {
      const event: ClientEvent & { channel: string } = {
        kind: "event",
        channel,
        seq: f.seq,
        epoch: f.epoch,
        id: f.id,
        type: f.type,
        payload: (f.payload ?? {}) as Record<string, unknown>,
        timestamp: f.timestamp,
      };
      const errors = host.dispatch(event);
      if (errors.length > 0) {
        this.redeliver(cursor, event, errors, f.seq, f.epoch); // not committed: it comes again
        return;
      }
      cursor.commit(f.seq, f.id);
      host.stats.delivered++;
      if (host.cursors.get(channel) === cursor) host.savePosition(channel, { seq: f.seq, epoch: f.epoch });
    } else if (verdict === "duplicate") {
      host.stats.duplicatesDropped++;
    } else {
      host.stats.gaps++;
      const have = cursor.seq;
      this.gapStreak = cursor.troubleAt(f.seq, f.epoch);
      const message = `sequence gap on ${channel} (have ${have}, got ${f.seq}): resyncing`;
      host.emit({ kind: "error", code: "gap", message, channel, seq: f.seq });
      this.finish(ABNORMAL, message);
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

  private onPublished(f: Extract<ServerControlFrame, { type: "published" }>): void {
    const entry = this.host.outbox.resolve(f.ref ?? "", f.payload);
    if (entry === undefined) return;
    const { channel, seq, epoch } = f.payload;
    this.host.emit({ kind: "published", id: entry.frameId, channel, seq, epoch });
  }

  private onUnsubscribed(f: Extract<ServerControlFrame, { type: "unsubscribed" }>): void {
    const channel = f.payload.channel;
    if (f.ref !== undefined && this.resyncRefs.delete(f.ref)) {
      this.resubscribe(channel);
      return;
    }
    this.forget(channel);
    if (f.ref) return; // the app asked; it already forgot the channel
    if (this.host.cursors.delete(channel)) this.host.forgetPosition(channel);
    this.host.emit({ kind: "unsubscribed", channel, reason: f.payload.reason ?? null });
    this.checkLive();
  }

  private onError(f: ErrorFrame): void {
    const host = this.host;
    const ref = f.ref ?? "";
    const { code, message, retryable } = f.payload;
    const entry = host.outbox.get(ref);
    if (entry !== undefined) {
      if (retryable) {
        entry.sentOn = null;
        const delay = host.retryDelay(entry.retries++);
        this.retrying(f, entry.record.channel, delay, entry.frameId);
        this.later(delay, () => this.sendPublish(entry));
      } else {
        this.failPublish(entry, new PublishRefused(code, message), code);
      }
      return;
    }
    if (this.refresh !== null && ref === this.refresh.ref) {
      const refresh = this.refresh;
      this.refresh = null;
      if (retryable) {
        const delay = host.retryDelay(refresh.retries);
        this.retrying(f, null, delay);
        this.later(delay, () => this.sendRefresh(refresh.token, refresh.retries + 1));
        return;
      }
    }
    const resync = this.resyncRefs.get(ref);
    if (resync !== undefined) {
      this.resyncRefs.delete(ref);
      const cursor = host.cursors.get(resync.channel);
      if (retryable && cursor !== undefined) {
        const delay = host.retryDelay(resync.retries);
        this.retrying(f, resync.channel, delay);
        this.later(delay, () => this.unsubscribeToResync(cursor, resync.retries + 1));
      } else {
        this.resubscribe(resync.channel); // e.g. not subscribed any more: subscribe is what we want
      }
      return;
    }
    const channel = this.subRefs.get(ref) ?? null;
    if (channel !== null) {
      this.subRefs.delete(ref);
      if (code === "already_subscribed") return;
      this.subscribed.delete(channel);
      const cursor = host.cursors.get(channel);
      if (retryable && cursor !== undefined) {
        const retries = this.subRetries.get(channel) ?? 0;
        this.subRetries.set(channel, retries + 1);
        const delay = host.retryDelay(retries);
        this.retrying(f, channel, delay);
        this.later(delay, () => {
          if (host.cursors.get(channel) === cursor) this.subscribe(cursor);
        });
        return;
      }
      this.forget(channel);
      if (host.cursors.delete(channel)) host.forgetPosition(channel);
      this.checkLive();
    } else if (code === "rate_limited" && retryable) {
      this.sweepLater(f); // a server that does not say which frame it dropped
      return;
    }
    host.emit({ kind: "error", code, message, channel });
  }

  /**
   * `rate_limited` without a `ref` (servers before CONTRACT §4's fix dropped frames silently and
   * named none): after a jittered backoff, send again everything this link has not had an answer
   * for. Each resend is safe: publishes keep their ids, a repeated `subscribe` is `already_subscribed`.
   */
  private sweepLater(f: ErrorFrame): void {
    if (this.sweepDue) return;
    this.sweepDue = true;
    const t = now();
    if (t - this.lastSweepAt > this.host.backoff.cap) this.sweeps = 0; // a new bout: start small
    this.lastSweepAt = t;
    const delay = this.host.retryDelay(this.sweeps++);
    this.retrying(f, null, delay);
    this.later(delay, () => {
      this.sweepDue = false;
      const host = this.host;
      for (const entry of host.outbox.inFlight(this.generation)) {
        entry.sentOn = null;
        this.sendPublish(entry);
      }
      // The old ids stay known: a late answer to the first frame is still recognised.
      for (const channel of new Set(this.subRefs.values())) {
        const cursor = host.cursors.get(channel);
        if (cursor !== undefined && this.recovering.get(channel) === null) this.sendSubscribe(cursor);
      }
      for (const { channel, retries } of new Map([...this.resyncRefs.values()].map((r) => [r.channel, r])).values()) {
        const cursor = host.cursors.get(channel);
        if (cursor !== undefined) this.unsubscribeToResync(cursor, retries);
      }
      if (this.refresh !== null) this.sendRefresh(this.refresh.token, this.refresh.retries + 1);
    });
  }
}
