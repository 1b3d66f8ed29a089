// The client: a supervisor loop that connects, authenticates, resubscribes from each channel's
// position and resends unacknowledged publishes after every drop, with observable state and events.
import { DEFAULT_BACKOFF, DEFAULT_STABLE_AFTER, backoffDelay, reconnectDelay, type Backoff } from "./backoff.js";
import { ABNORMAL, AUTH_FAILED, Reconnect, adviceFor } from "./codes.js";
import { Connection, now, type ClientStats, type ConnectionEnd, type ConnectionHost } from "./connection.js";
import { ChannelCursor } from "./cursor.js";
import { ClientClosed, MessageTooBig, OutboxFull, type ClientError } from "./errors.js";
import type { ClientEvent, ClientEventKind, ConnectionState, EventOfKind, TokenReason } from "./events.js";
import { Lifecycle } from "./lifecycle.js";
import { DEFAULT_OUTBOX_LIMITS, MAX_ID_LENGTH, Outbox, Pending, type OutboxLimits, type PublishResult } from "./outbox.js";
import type { OutboxStore } from "./outbox-store.js";
import { MemoryPositionStore, type Position, type PositionStore } from "./positions.js";
import { frame, newId } from "./protocol.js";
import type { WebSocketConstructor } from "./socket.js";

/** Returns a token (a JWT) for `reason`, or null for "no token: stop". May be async. */
export type TokenProvider = (reason: TokenReason) => string | null | undefined | Promise<string | null | undefined>;

export interface ClientOptions {
  /** `ws://host:port/ws` or `wss://…` */
  url: string;
  /** Called whenever a token is needed: connecting, `token_expiring`, after 4001/4002. */
  tokenProvider: TokenProvider;
  /** The WebSocket class; defaults to `globalThis.WebSocket` (browsers, React Native). On Node pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** Where channel positions live (default: in memory). */
  positions?: PositionStore;
  /** Reconnect and retry delays in ms (default 500 doubling to 20 000, full jitter). */
  backoff?: Partial<Backoff>;
  /** ms a link must stay up after `auth_ok` before the failures before it are forgotten (default 10 000). */
  stableAfter?: number;
  /** ms of silence beyond the server's `heartbeatInterval` before the link counts as dead (default 3000). */
  heartbeatSlack?: number;
  /** ms `reconnectNow()` waits for any frame after its probe `ping` before the link counts as dead
   *  (default: `heartbeatSlack`). */
  probeTimeout?: number;
  /** Where unacknowledged publishes are kept (default: this client's memory), and the bounds. */
  outbox?: Partial<OutboxLimits> & { store?: OutboxStore };
  /** ms for the WebSocket handshake and `auth_ok` (default 10 000). */
  connectTimeout?: number;
  /** Uniform [0, 1) source for the jitter (default Math.random; seed it in tests). */
  random?: () => number;
}

/** `publish` options. */
export interface PublishOptions {
  /** The frame id: the idempotency key (1–128 characters; a UUID v4). Publishing the same id again
   *  gets the same answer and stores nothing new; while it is pending, the same promise. Default: a fresh UUID v4. */
  id?: string;
}

/** `subscribe` options: where to start when the position store has no entry for the channel. */
export interface SubscribeOptions {
  /** 0: from the start of the retained history; omitted: live events only */
  lastSeq?: number;
  epoch?: string;
}

type Listener = (event: ClientEvent) => void;

/** An `error` listener threw: there is no event left to report that with. Never rethrown (React
 *  Native treats an exception thrown from a timer as fatal). */
function lastResort(error: unknown): void {
  (globalThis as { console?: { error?: (...args: unknown[]) => void } }).console?.error?.("wsserver client: an error listener threw", error);
}

/**
 * A reconnecting client for one server URL.
 *
 * `client.on(kind, listener)` (or `on("*", …)`) observes events, `client.start()` connects,
 * `subscribe`/`publish`, and `close()` ends it. Listeners run synchronously in the order events
 * happen; a channel's position is committed and saved once every listener returned, and an event
 * a listener threw on is delivered again (see the README's "Listeners that throw").
 */
export class Client implements ConnectionHost {
  readonly url: string;
  readonly positions: PositionStore;
  readonly stats: ClientStats = {
    connects: 0,
    reconnects: 0,
    delivered: 0,
    duplicatesDropped: 0,
    gaps: 0,
    publishesResent: 0,
    listenerFailures: 0,
    retries: 0,
  };
  readonly cursors = new Map<string, ChannelCursor>();
  readonly outbox: Outbox;
  readonly backoff: Readonly<Backoff>;
  readonly stableAfter: number;
  readonly heartbeatSlack: number;
  readonly probeTimeout: number;
  readonly connectTimeout: number;
  /** Feed it the platform's foreground/background and connectivity reports (the hooks do). */
  readonly lifecycle: Lifecycle;
  maxMessageSize: number | null = null;
  /** Resolves with the final `closed` event once the client stopped for good. */
  readonly closed: Promise<EventOfKind<"closed">>;

  private readonly provider: TokenProvider;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly random: () => number;
  private readonly listeners = new Map<ClientEventKind | "*", Set<Listener>>();
  private currentState: ConnectionState = "connecting";
  private conn: Connection | null = null;
  private generation = 0;
  private started = false;
  private stopped = false;
  private done = false;
  /** links in a row that failed or did not stay up `stableAfter` */
  private failures = 0;
  private lastWakeAt = -Infinity;
  private offline = false;
  /** the backoff wait in progress: cut it to `ms` from now (if that is sooner) */
  private shorten: ((ms: number) => void) | null = null;
  private resolveClosed!: (event: EventOfKind<"closed">) => void;

  constructor(options: ClientOptions) {
    // A regex, not `new URL()`: React Native's URL does not implement `protocol`.
    if (!/^wss?:\/\/[^/]/i.test(options.url)) throw new TypeError(`not a ws:// or wss:// URL: ${options.url}`);
    this.url = options.url;
    this.provider = options.tokenProvider;
    const impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (impl === undefined) throw new TypeError("no WebSocket on this platform: pass options.WebSocket (on Node: the `ws` package)");
    this.WebSocketImpl = impl;
    this.positions = options.positions ?? new MemoryPositionStore();
    this.backoff = Object.freeze({ ...DEFAULT_BACKOFF, ...options.backoff });
    this.stableAfter = options.stableAfter ?? DEFAULT_STABLE_AFTER;
    this.heartbeatSlack = options.heartbeatSlack ?? 3000;
    this.probeTimeout = options.probeTimeout ?? this.heartbeatSlack;
    this.connectTimeout = options.connectTimeout ?? 10_000;
    this.random = options.random ?? Math.random;
    const { store, ...limits } = options.outbox ?? {};
    this.outbox = new Outbox(store ?? null, { ...DEFAULT_OUTBOX_LIMITS, ...limits }, (error) =>
      this.emit({ kind: "error", code: "outbox_store", message: String(error), channel: null, cause: error }),
    );
    this.lifecycle = new Lifecycle(this);
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
  }

  // ------------------------------------------------------------------ public API

  get state(): ConnectionState {
    return this.currentState;
  }

  /** Calls `listener` for every event of `kind` ("*": every event). Returns a function that removes it. */
  on<K extends ClientEventKind>(kind: K, listener: (event: EventOfKind<K>) => void): () => void;
  on(kind: "*", listener: (event: ClientEvent) => void): () => void;
  on(kind: ClientEventKind | "*", listener: (event: never) => void): () => void {
    let set = this.listeners.get(kind);
    if (set === undefined) this.listeners.set(kind, (set = new Set()));
    const l = listener as Listener;
    set.add(l);
    return () => set.delete(l);
  }

  /** Starts connecting (once); the client then stays connected until `close()` or a final close code.
   *  Publishes left in a durable outbox store by an earlier client are sent again. */
  start(): this {
    if (!this.started) {
      this.started = true;
      void this.restoreOutbox();
      void this.supervise().then(
        (end) => this.finishClient(end),
        (error: unknown) => this.finishClient({ code: ABNORMAL, reason: `internal error: ${String(error)}` }),
      );
    }
    return this;
  }

  /** The position of `channel` the app has received up to. */
  position(channel: string): Position | null {
    return this.cursors.get(channel)?.position ?? null;
  }

  /**
   * Subscribes now or at the next connection, and after every reconnect. Resumes from the position
   * store's entry for `channel` if it has one, else from `lastSeq`/`epoch`.
   */
  async subscribe(channel: string, options: SubscribeOptions = {}): Promise<void> {
    if (this.cursors.has(channel)) return;
    const stored = await this.positions.load(channel);
    if (this.cursors.has(channel) || this.done) return;
    const start = stored ?? (options.lastSeq !== undefined ? { seq: options.lastSeq, epoch: options.epoch ?? null } : null);
    const cursor = new ChannelCursor(channel, start);
    this.cursors.set(channel, cursor);
    const conn = this.conn;
    if (conn !== null && conn.authenticated) conn.subscribe(cursor);
  }

  /** Stops the channel's subscription and forgets its position. */
  async unsubscribe(channel: string): Promise<void> {
    if (!this.cursors.delete(channel)) return;
    this.forgetPosition(channel);
    const conn = this.conn;
    if (conn !== null && conn.authenticated && conn.subscribed.has(channel)) {
      conn.forget(channel);
      conn.send(frame("unsubscribe", { channel }));
    }
  }

  /**
   * Publishes through the outbox and resolves with the server's acknowledgement. The publish is
   * kept (in `outbox.store`, if durable) until the server answers; one interrupted by a drop, or by
   * the end of the process, is resent with the same frame id, so it is stored exactly once. Pass
   * `{id}` to use your own idempotency key. Rejects with `MessageTooBig` (never sent),
   * `PublishRefused`, `PublishExpired`, `OutboxFull`, or `ClientClosed`.
   */
  publish(channel: string, event: string, data: Record<string, unknown>, options: PublishOptions = {}): Promise<PublishResult> {
    if (this.done || this.stopped) return Promise.reject(new ClientClosed("the client is closed"));
    const id = options.id ?? newId();
    if (typeof id !== "string" || id.length === 0 || id.length > MAX_ID_LENGTH) {
      return Promise.reject(new TypeError(`a publish id is 1–${MAX_ID_LENGTH} characters (a UUID v4): ${JSON.stringify(id)}`));
    }
    const pending = this.outbox.get(id);
    if (pending !== undefined) return pending.promise;
    const limit = this.outbox.limits.maxEntries;
    if (this.outbox.size >= limit) return Promise.reject(new OutboxFull(`the outbox holds ${limit} unacknowledged publishes`));
    const entry = new Pending({ id, channel, event, data, createdAt: Date.now() });
    if (this.maxMessageSize !== null && entry.bytes > this.maxMessageSize) {
      return Promise.reject(new MessageTooBig(`publish frame of ${entry.bytes} bytes > maxMessageSize ${this.maxMessageSize}`));
    }
    this.outbox.add(entry, this.sendWhenReady);
    return entry.promise;
  }

  /**
   * A real wake (the network is back, the app came to the foreground; `client.lifecycle` calls it):
   * forget the failures so far, retry within `backoff.base` if waiting, and probe an open link with
   * a `ping` (dead unless a frame arrives within `probeTimeout`). Wakes closer together than
   * `backoff.base` count as one.
   */
  reconnectNow(): void {
    if (this.done || this.stopped) return;
    const t = now();
    if (t - this.lastWakeAt >= this.backoff.base) {
      this.lastWakeAt = t;
      this.failures = 0;
      this.shorten?.(this.random() * this.backoff.base);
    }
    this.conn?.probe();
  }

  /**
   * The platform says the device is offline (`true`) or not (`false`); `client.lifecycle` calls it.
   * Only a hint: offline probes an open link, and retries go on at the backoff cap (they never
   * stop); the next connection that authenticates clears it.
   */
  setOffline(offline: boolean): void {
    if (this.done || this.stopped) return;
    this.offline = offline;
    if (offline) this.conn?.probe();
  }

  /** Closes the connection (1000) and stops; pending publishes reject with ClientClosed (a durable
   *  outbox store keeps them for the next client). */
  async close(): Promise<void> {
    this.stopped = true;
    if (!this.started) {
      this.finishClient({ code: 1000, reason: "closed by the application" });
    } else {
      this.conn?.closeByApp();
      this.shorten?.(0);
    }
    await this.closed;
  }

  // ------------------------------------------------------------------ ConnectionHost

  current(): Connection | null {
    return this.conn;
  }

  setState(state: ConnectionState): void {
    this.currentState = state;
    if (state === "connected") this.offline = false; // a link authenticated: evidently online
  }

  dispatch(event: ClientEvent): unknown[] {
    const errors: unknown[] = [];
    for (const key of [event.kind, "*"] as const) {
      const set = this.listeners.get(key);
      if (set === undefined) continue;
      for (const listener of [...set]) {
        try {
          listener(event);
        } catch (error) {
          errors.push(error);
        }
      }
    }
    return errors;
  }

  emit(event: ClientEvent): boolean {
    const errors = this.dispatch(event);
    for (const error of errors) this.reportListener(event, error);
    return errors.length === 0;
  }

  listenerFailed(event: ClientEvent & { channel: string }, errors: unknown[], seq: number, retryIn: number): void {
    for (const error of errors) this.reportListener(event, error, seq, retryIn);
  }

  retryDelay(step: number): number {
    return backoffDelay(this.backoff, step, this.random);
  }

  async token(reason: TokenReason): Promise<string | null> {
    const token = await this.provider(reason);
    return token ?? null;
  }

  savePosition(channel: string, position: Position): void {
    this.storeCall(channel, () => this.positions.save(channel, position));
  }

  forgetPosition(channel: string): void {
    this.storeCall(channel, () => this.positions.forget(channel));
  }

  // ------------------------------------------------------------------ supervision

  private reportListener(event: ClientEvent, error: unknown, seq?: number, retryIn?: number): void {
    if (event.kind === "error") {
      lastResort(error);
      return;
    }
    const channel = "channel" in event ? event.channel : null;
    const again = retryIn === undefined ? "" : `; delivered again in ${Math.round(retryIn)} ms`;
    const report: ClientEvent = { kind: "error", code: "listener", message: `a "${event.kind}" listener threw: ${String(error)}${again}`, channel, cause: error };
    if (seq !== undefined) report.seq = seq;
    if (retryIn !== undefined) report.retryIn = retryIn;
    this.emit(report);
  }

  private readonly sendWhenReady = (entry: Pending): void => {
    const conn = this.conn;
    if (conn !== null && conn.authenticated) conn.sendPublish(entry);
  };

  /** Publishes an earlier client left in the outbox store go out again (same ids: stored once). */
  private async restoreOutbox(): Promise<void> {
    for (const record of await this.outbox.load()) {
      if (this.done || this.outbox.get(record.id) !== undefined) continue;
      this.outbox.add(new Pending(record, true), this.sendWhenReady);
    }
  }

  private storeCall(channel: string, call: () => void | Promise<void>): void {
    const failed = (error: unknown): void => {
      this.emit({ kind: "error", code: "position_store", message: String(error), channel, cause: error });
    };
    try {
      const result = call();
      if (result instanceof Promise) result.catch(failed);
    } catch (error) {
      failed(error);
    }
  }

  private async supervise(): Promise<{ code: number; reason: string }> {
    let reason: TokenReason = "connect";
    let rejected: string | null = null;
    let lostAt = now();
    while (!this.stopped) {
      this.setState("connecting");
      this.emit({ kind: "connecting", attempt: this.failures });
      const started = now();
      const got = await this.token(reason).then(
        (token) => ({ token }),
        (error: unknown) => ({ token: null, error }),
      );
      if (this.stopped) break;
      let end: ConnectionEnd;
      if ("error" in got) {
        this.emit({ kind: "error", code: "token_provider", message: String(got.error), channel: null, cause: got.error });
        end = { code: ABNORMAL, reason: `the token provider failed: ${String(got.error)}`, authenticated: false, upFor: 0 };
      } else if (got.token === null) {
        return { code: AUTH_FAILED, reason: "the token provider has no token" };
      } else if (rejected !== null && got.token === rejected) {
        return { code: AUTH_FAILED, reason: "the token provider returned the token the server rejected" };
      } else {
        end = await this.connectOnce(got.token, started, lostAt);
        lostAt = now();
      }
      if (this.stopped) break;
      const advice = adviceFor(end.code);
      if (advice === Reconnect.NEVER) return { code: end.code, reason: end.reason };
      // Failures are forgotten after a link that stayed up, never merely on `auth_ok`: a server that
      // accepts and then drops every link sees the backoff grow, not a loop.
      if (end.upFor >= this.stableAfter) this.failures = 0;
      rejected = end.code === AUTH_FAILED ? got.token : null;
      reason = advice === Reconnect.NEW_TOKEN ? "rejected" : "connect";
      const delay = reconnectDelay(this.backoff, { advice, failures: this.failures, streak: end.streak, offline: this.offline }, this.random);
      this.failures++;
      this.stats.reconnects++;
      this.setState("reconnecting");
      this.emit({ kind: "reconnecting", attempt: this.failures, delay, code: end.code, reason: end.reason, advice });
      await this.sleep(delay);
    }
    return { code: 1000, reason: "closed by the application" };
  }

  private async connectOnce(token: string, started: number, lostAt: number): Promise<ConnectionEnd> {
    this.generation++;
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (error) {
      return { code: ABNORMAL, reason: `cannot connect: ${String(error)}`, authenticated: false, upFor: 0 };
    }
    const conn = new Connection(this, ws, this.generation, token, started, lostAt);
    this.conn = conn;
    try {
      return await conn.ended;
    } finally {
      this.conn = null;
    }
  }

  /** Waits `delay` ms, or less when `reconnectNow()` or `close()` shortens it. */
  private sleep(delay: number): Promise<void> {
    return new Promise((resolve) => {
      let until = now() + delay;
      const done = (): void => {
        this.shorten = null;
        resolve();
      };
      let timer = setTimeout(done, delay);
      this.shorten = (ms) => {
        if (now() + ms >= until) return;
        clearTimeout(timer);
        until = now() + ms;
        timer = setTimeout(done, ms);
      };
    });
  }

  private finishClient(end: { code: number; reason: string }): void {
    if (this.done) return;
    this.done = true;
    this.setState("closed");
    const error: ClientError = new ClientClosed(`client closed: ${end.code} ${end.reason}`);
    this.outbox.failAll(error);
    const event: EventOfKind<"closed"> = { kind: "closed", code: end.code, reason: end.reason };
    this.emit(event);
    this.resolveClosed(event);
  }
}
