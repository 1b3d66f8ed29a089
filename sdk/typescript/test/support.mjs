// Test support: a real `wsserver serve` subprocess on free ports (and the chaos proxy), HS256
// tokens minted with node:crypto, the HTTP API, and a recorder that waits for client events.
import { spawn } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { Client } from "../dist/index.js";

export const SDK_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const REPO = resolve(SDK_DIR, "..", "..");
export const PYTHON = process.env.WSSERVER_PYTHON ?? join(REPO, ".venv", "bin", "python");
export const SECRET = "ts-sdk-test-secret-" + "x".repeat(32);
export const API_KEY = "ts-sdk-test-api-key";
/** Absolute limit (ms) for any single wait in these tests. */
export const WAIT = 10_000;
/** Server settings for the SDK tests: pings every 0.3 s, so dead links show within a second. */
export const FAST_ENV = { WSSERVER_HEARTBEAT_INTERVAL: "0.3", WSSERVER_HEARTBEAT_TIMEOUT: "0.5" };

let users = 0;
/** A user name no other test in this process uses. */
export function user() {
  return `u${process.pid}x${users++}`;
}

export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.on("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

const b64url = (data) => Buffer.from(data).toString("base64url");

/** An HS256 JWT for `sub` (channels and publish default to everything). */
export function makeToken(sub, { channels = ["*"], publish = ["*"], ttl = 600, secret = SECRET, ...extra } = {}) {
  const claims = { sub, exp: Math.floor(Date.now() / 1000 + ttl), channels, publish, jti: randomUUID(), ...extra };
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" })) + "." + b64url(JSON.stringify(claims));
  return head + "." + createHmac("sha256", secret).update(head).digest("base64url");
}

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** Polls `predicate` until it is true, failing after `timeout` ms. */
export async function until(predicate, what = "condition", timeout = WAIT) {
  const deadline = Date.now() + timeout;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(10);
  }
}

async function waitChild(child, timeout) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await Promise.race([new Promise((ok) => child.once("exit", ok)), sleep(timeout)]);
}

/** `python -m wsserver serve` on free ports with a private data dir; `await ServerProcess.start()`. */
export class ServerProcess {
  constructor(env = {}) {
    this.extraEnv = env;
    this.root = mkdtempSync(join(tmpdir(), "wsserver-ts-"));
    this.dataDir = join(this.root, "data");
    this.logPath = join(this.root, "server.log");
    this.child = null;
  }

  static async start(env = {}) {
    const server = new ServerProcess(env);
    server.port = await freePort();
    server.apiPort = await freePort();
    await server.launch();
    return server;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get apiUrl() {
    return `http://127.0.0.1:${this.apiPort}`;
  }

  async launch(timeout = 20_000) {
    const env = {
      ...process.env,
      WSSERVER_HOST: "127.0.0.1",
      WSSERVER_PORT: String(this.port),
      WSSERVER_API_HOST: "127.0.0.1",
      WSSERVER_API_PORT: String(this.apiPort),
      WSSERVER_API_KEY: API_KEY,
      WSSERVER_JWT_SECRET: SECRET,
      WSSERVER_DATA_DIR: this.dataDir,
      ...this.extraEnv,
    };
    const log = openSync(this.logPath, "a");
    this.child = spawn(PYTHON, ["-m", "wsserver", "serve"], { cwd: REPO, env, stdio: ["ignore", log, log] });
    const deadline = Date.now() + timeout;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`server exited with ${this.child.exitCode}:\n${this.log()}`);
      try {
        const r = await fetch(`${this.apiUrl}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (r.status === 200) return this;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`server not healthy in ${timeout} ms:\n${this.log()}`);
      await sleep(50);
    }
  }

  log() {
    try {
      return readFileSync(this.logPath, "utf8");
    } catch {
      return "";
    }
  }

  /** SIGTERM (the server closes every client with 1001), then wait for the exit. */
  async stop(timeout = 15_000) {
    if (this.child === null || this.child.exitCode !== null) return;
    this.child.kill("SIGTERM");
    await waitChild(this.child, timeout);
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
    await waitChild(this.child, 5000);
  }

  async restart() {
    await this.stop();
    await this.launch();
  }

  async close() {
    await this.stop();
    rmSync(this.root, { recursive: true, force: true });
  }

  /** Calls the HTTP API; returns {status, body}. */
  async api(method, path, body) {
    const r = await fetch(this.apiUrl + path, {
      method,
      headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(WAIT),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }

  async publish(channel, data = {}, event = "message.new") {
    const { status, body } = await this.api("POST", "/api/v1/publish", { channel, event, data });
    if (status !== 200) throw new Error(`publish failed: ${status} ${JSON.stringify(body)}`);
    return body;
  }

  async disconnect(userId, code, reason = "test") {
    return this.api("POST", "/api/v1/disconnect", { userId, code, reason });
  }
}

/** Runs `fn(server)` against a server of its own (settings `env`), always stopping it. */
export async function withServer(env, fn) {
  const server = await ServerProcess.start(env);
  try {
    return await fn(server);
  } finally {
    await server.close();
  }
}

/** `python -m wsserver chaos-proxy` in front of `targetPort`; resolves once it accepts connections. */
export async function startChaosProxy(targetPort, args = []) {
  const port = await freePort();
  const child = spawn(
    PYTHON,
    ["-m", "wsserver.chaos_proxy", "--listen", `127.0.0.1:${port}`, "--target", `127.0.0.1:${targetPort}`, ...args],
    { cwd: REPO, stdio: ["ignore", "ignore", "inherit"] },
  );
  const { connect } = await import("node:net");
  const deadline = Date.now() + WAIT;
  for (;;) {
    const up = await new Promise((ok) => {
      const sock = connect(port, "127.0.0.1", () => {
        sock.destroy();
        ok(true);
      });
      sock.on("error", () => ok(false));
    });
    if (up) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error("chaos proxy did not start");
    await sleep(50);
  }
  return {
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    async stop() {
      child.kill("SIGTERM");
      await waitChild(child, 5000);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}

/** Records every event of a client; `waitFor(kind, where, {count})` resolves with the count-th match. */
export class Recorder {
  constructor(client) {
    this.events = [];
    this.waiters = new Set();
    client.on("*", (event) => {
      this.events.push(event);
      for (const check of [...this.waiters]) check();
    });
  }

  of(kind, where = () => true) {
    return this.events.filter((e) => e.kind === kind && where(e));
  }

  seqs(channel) {
    return this.of("event", (e) => e.channel === channel).map((e) => e.seq);
  }

  waitFor(kind, where = () => true, { count = 1, timeout = WAIT } = {}) {
    return new Promise((ok, fail) => {
      const check = () => {
        const found = this.of(kind, where);
        if (found.length >= count) {
          cleanup();
          ok(found[count - 1]);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        fail(new Error(`timed out waiting for ${count} × ${kind}; saw ${JSON.stringify(this.events.map((e) => e.kind))}`));
      }, timeout);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }
}

/** A token provider minting a fresh token for `sub` on every call, recording the reasons. */
export function staticTokens(sub, claims = {}) {
  const reasons = [];
  const provider = (reason) => {
    reasons.push(reason);
    return makeToken(sub, claims);
  };
  provider.reasons = reasons;
  return provider;
}

/** A started client with fast test settings and its recorder; `await using`-free: call `client.close()`. */
export function startClient(url, tokenProvider, options = {}) {
  const client = new Client({
    url,
    tokenProvider,
    WebSocket,
    heartbeatSlack: 500,
    backoff: { base: 50, cap: 200 },
    random: seeded(1),
    ...options,
  });
  const rec = new Recorder(client);
  client.start();
  return { client, rec };
}

/** A seeded uniform [0, 1) generator (mulberry32), for reproducible jitter. */
export function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A uniform [0, 1) source that returns `values` in turn (then the last one forever). */
export function sequence(...values) {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)];
}

/**
 * An in-process server double for the paths the real server cannot be made to take on demand
 * (a `rate_limited` answer with its `ref`, a gap in a replay): `fake.WebSocket` is the class a
 * client is given. By default it answers like the server (`auth_ok`, `subscribed` none,
 * `published` with the next seq, `pong`); `fake.on(type, (socket, frame) => …)` takes a frame
 * type over (return true to also run the default). Every frame the client sent is in `fake.sent`.
 */
export class FakeServer {
  constructor() {
    this.sockets = [];
    this.sent = [];
    this.handlers = new Map();
    this.seq = 0;
    const fake = this;
    this.WebSocket = class FakeSocket {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.onopen = this.onmessage = this.onclose = this.onerror = null;
        fake.sockets.push(this);
        setTimeout(() => {
          if (this.readyState !== 0) return;
          this.readyState = 1;
          this.onopen?.({});
        }, 0);
      }
      send(data) {
        const frame = JSON.parse(data);
        fake.sent.push({ socket: this, frame, at: performance.now() });
        setTimeout(() => fake.handle(this, frame), 0);
      }
      close(code = 1000, reason = "") {
        fake.drop(this, code, reason);
      }
    };
  }

  on(type, handler) {
    this.handlers.set(type, handler);
    return this;
  }

  /** Frames of `type` the client sent, in order. */
  frames(type) {
    return this.sent.filter((s) => s.frame.type === type);
  }

  handle(socket, frame) {
    if (socket.readyState !== 1) return;
    const custom = this.handlers.get(frame.type);
    if (custom && !custom(socket, frame)) return;
    const p = frame.payload ?? {};
    if (frame.type === "auth") {
      this.reply(socket, "auth_ok", { sessionId: "s", userId: "u", expiresAt: Date.now() + 600_000, heartbeatInterval: 25_000, maxMessageSize: 65_536 }, { ref: frame.id });
    } else if (frame.type === "subscribe") {
      this.reply(socket, "subscribed", { channel: p.channel, epoch: "e", headSeq: this.seq, recovery: "none", replayCount: 0 }, { ref: frame.id });
    } else if (frame.type === "unsubscribe") {
      this.reply(socket, "unsubscribed", { channel: p.channel }, { ref: frame.id });
    } else if (frame.type === "publish") {
      this.reply(socket, "published", { channel: p.channel, seq: ++this.seq, epoch: "e" }, { ref: frame.id });
    } else if (frame.type === "ping") {
      this.reply(socket, "pong", {}, { ref: frame.id });
    }
  }

  /** Sends a server frame to `socket` (an open one). */
  reply(socket, type, payload, extra = {}) {
    if (socket.readyState !== 1) return;
    socket.onmessage?.({ data: JSON.stringify({ type, id: randomUUID(), timestamp: Date.now(), payload, ...extra }) });
  }

  /** The server closes `socket` with `code`. */
  drop(socket, code, reason = "") {
    if (socket.readyState >= 2) return;
    socket.readyState = 3;
    setTimeout(() => socket.onclose?.({ code, reason }), 0);
  }

  /** The socket the client uses now. */
  get last() {
    return this.sockets.at(-1);
  }
}

/**
 * A `ws` WebSocket class whose links can go bad on demand: `link.mute` swallows everything the
 * server sends (a half-open link: acks and pongs never arrive), `link.blockSend` drops everything
 * the client sends. Pass `link.WebSocket` as the client's WebSocket.
 */
export function lossyLink() {
  const link = { mute: false, blockSend: false };
  link.WebSocket = class LossyWebSocket extends WebSocket {
    constructor(url) {
      super(url);
      let onmessage = null;
      Object.defineProperty(this, "onmessage", {
        get: () => onmessage,
        set: (fn) => {
          onmessage = fn;
          super.onmessage = fn
            ? (event) => {
                if (!link.mute) fn(event);
              }
            : null;
        },
      });
    }
    send(data) {
      if (!link.blockSend) super.send(data);
    }
  };
  return link;
}

/** A Web Storage double (the `localStorage` API) over a Map. */
export function mapStorage(map = new Map()) {
  return { map, getItem: (k) => map.get(k) ?? null, setItem: (k, v) => void map.set(k, String(v)), removeItem: (k) => void map.delete(k) };
}
