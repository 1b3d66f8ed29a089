// The client: a supervisor loop that connects, authenticates, resubscribes from each channel's
// position and resends unacknowledged publishes after every drop, with observable state and events.
import { DEFAULT_BACKOFF, backoffDelay, type Backoff } from "./backoff.js";
import { ABNORMAL, AUTH_FAILED, Reconnect, adviceFor } from "./codes.js";
import { Connection, now, type ClientStats, type ConnectionEnd, type ConnectionHost } from "./connection.js";
import { ChannelCursor } from "./cursor.js";
import { ClientClosed, MessageTooBig, type ClientError } from "./errors.js";
import type { ClientEvent, ClientEventKind, ConnectionState, EventOfKind, TokenReason } from "./events.js";
import { Outbox, type PublishResult } from "./outbox.js";
import { MemoryPositionStore, type Position, type PositionStore } from "./positions.js";
import { frame, utf8Length } from "./protocol.js";
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
  /** Reconnect delays in ms (default 500 doubling to 20 000, full jitter). */
  backoff?: Partial<Backoff>;
  /** ms of silence beyond the server's `heartbeatInterval` before the link counts as dead (default 3000). */
  heartbeatSlack?: number;
  /** ms for the WebSocket handshake and `auth_ok` (default 10 000). */
  connectTimeout?: number;
  /** Uniform [0, 1) source for the jitter (default Math.random; seed it in tests). */
  random?: () => number;
}

/** `subscribe` options: where to start when the position store has no entry for the channel. */
export interface SubscribeOptions {
  /** 0: from the start of the retained history; omitted: live events only */
  lastSeq?: number;
  epoch?: string;
}

type Listener = (event: ClientEvent) => void;

/** Rethrows an app listener's exception outside the SDK's call stack, where the platform reports it. */
function reportLater(error: unknown): void {
  setTimeout(() => {
    throw error;
  }, 0);
}

/**
 * A reconnecting client for one server URL.
 *
 * `client.on(kind, listener)` (or `on("*", …)`) observes events, `client.start()` connects,
 * `subscribe`/`publish`, and `close()` ends it. Listeners run synchronously in the order events
 * happen; a channel's position is saved after its listeners returned.
 */
export class Client implements ConnectionHost {
  readonly url: string;
  readonly positions: PositionStore;
  readonly stats: ClientStats = { connects: 0, reconnects: 0, delivered: 0, duplicatesDropped: 0, gaps: 0, publishesResent: 0 };
  readonly cursors = new Map<string, ChannelCursor>();
  readonly outbox = new Outbox();
  readonly heartbeatSlack: number;
  readonly connectTimeout: number;
  maxMessageSize: number | null = null;
  /** Resolves with the final `closed` event once the client stopped for good. */
  readonly closed: Promise<EventOfKind<"closed">>;

  private readonly provider: TokenProvider;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly backoff: Backoff;
  private readonly random: () => number;
  private readonly listeners = new Map<ClientEventKind | "*", Set<Listener>>();
  private currentState: ConnectionState = "connecting";
  private conn: Connection | null = null;
  private generation = 0;
  private started = false;
  private stopped = false;
  private done = false;
  private wake: (() => void) | null = null;
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
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.heartbeatSlack = options.heartbeatSlack ?? 3000;
    this.connectTimeout = options.connectTimeout ?? 10_000;
    this.random = options.random ?? Math.random;
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

  /** Starts connecting (once); the client then stays connected until `close()` or a final close code. */
  start(): this {
    if (!this.started) {
      this.started = true;
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
   * Publishes through the outbox and resolves with the server's acknowledgement. A publish
   * interrupted by a drop is resent with the same frame id after the reconnect, so it is stored
   * exactly once. Rejects with `MessageTooBig` (never sent), `PublishRefused` or `ClientClosed`.
   */
  publish(channel: string, event: string, data: Record<string, unknown>): Promise<PublishResult> {
    if (this.done || this.stopped) return Promise.reject(new ClientClosed("the client is closed"));
    const f = frame("publish", { channel, event, data });
    const wire = JSON.stringify(f);
    const bytes = utf8Length(wire);
    if (this.maxMessageSize !== null && bytes > this.maxMessageSize) {
      return Promise.reject(new MessageTooBig(`publish frame of ${bytes} bytes > maxMessageSize ${this.maxMessageSize}`));
    }
    const entry = this.outbox.add(f.id, wire, bytes);
    const conn = this.conn;
    if (conn !== null && conn.authenticated) conn.sendPublish(entry);
    return entry.promise;
  }

  /**
   * "The network may be back": wired to browser `online`/`visibilitychange` and React Native's
   * AppState by `attachBrowserHooks`/`attachAppStateHooks`. Waiting to reconnect: go now.
   * Connected: probe the link with a `ping` and reconnect if it stays silent for the slack.
   */
  reconnectNow(): void {
    if (this.done || this.stopped) return;
    if (this.wake !== null) this.wake();
    else this.conn?.probe();
  }

  /** Closes the connection (1000) and stops; pending publishes reject with ClientClosed. */
  async close(): Promise<void> {
    this.stopped = true;
    if (!this.started) {
      this.finishClient({ code: 1000, reason: "closed by the application" });
    } else {
      this.conn?.closeByApp();
      this.wake?.();
    }
    await this.closed;
  }

  // ------------------------------------------------------------------ ConnectionHost

  current(): Connection | null {
    return this.conn;
  }

  setState(state: ConnectionState): void {
    this.currentState = state;
  }

  emit(event: ClientEvent): void {
    for (const key of [event.kind, "*"] as const) {
      const set = this.listeners.get(key);
      if (set === undefined) continue;
      for (const listener of [...set]) {
        try {
          listener(event);
        } catch (error) {
          reportLater(error);
        }
      }
    }
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

  private storeCall(channel: string, call: () => void | Promise<void>): void {
    const failed = (error: unknown): void =>
      this.emit({ kind: "error", code: "position_store", message: String(error), channel });
    try {
      const result = call();
      if (result instanceof Promise) result.catch(failed);
    } catch (error) {
      failed(error);
    }
  }

  private async supervise(): Promise<{ code: number; reason: string }> {
    let attempt = 0;
    let reason: TokenReason = "connect";
    let rejected: string | null = null;
    let lostAt = now();
    while (!this.stopped) {
      this.setState("connecting");
      this.emit({ kind: "connecting", attempt });
      const started = now();
      const got = await this.token(reason).then(
        (token) => ({ token }),
        (error: unknown) => ({ token: null, error }),
      );
      if (this.stopped) break;
      let end: ConnectionEnd;
      if ("error" in got) {
        this.emit({ kind: "error", code: "token_provider", message: String(got.error), channel: null });
        end = { code: ABNORMAL, reason: `the token provider failed: ${String(got.error)}`, authenticated: false };
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
      if (end.authenticated) attempt = 0;
      rejected = end.code === AUTH_FAILED ? got.token : null;
      reason = advice === Reconnect.NEW_TOKEN ? "rejected" : "connect";
      const atOnce = (advice === Reconnect.AT_ONCE || advice === Reconnect.NEW_TOKEN) && attempt === 0;
      const delay = atOnce ? 0 : backoffDelay(this.backoff, attempt, this.random);
      attempt++;
      this.stats.reconnects++;
      this.setState("reconnecting");
      this.emit({ kind: "reconnecting", attempt, delay, code: end.code, reason: end.reason, advice });
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
      return { code: ABNORMAL, reason: `cannot connect: ${String(error)}`, authenticated: false };
    }
    const conn = new Connection(this, ws, this.generation, token, started, lostAt);
    this.conn = conn;
    try {
      return await conn.ended;
    } finally {
      this.conn = null;
    }
  }

  /** Waits `delay` ms, or less when `reconnectNow()` or `close()` wakes it. */
  private sleep(delay: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve();
      }, delay);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
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
