// The SDK's pure parts and build guarantees: the close-code table equals the server's, cursor
// verdicts and trouble streaks, backoff bounds and the reconnect-delay rules, position and outbox
// store adapters, the lifecycle state machine (a table) and the platform hooks feeding it, the
// CommonJS build, the npm tarball, and that a protocol change the SDK does not handle fails its
// type check.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import * as sdk from "../dist/index.js";
import { PYTHON, REPO, SDK_DIR, mapStorage, seeded, sleep } from "./support.mjs";

test("the close-code advice table equals the server's (wsserver.codes)", () => {
  const script = "import json; from wsserver.codes import CloseCode; print(json.dumps({int(c): str(c.reconnect) for c in CloseCode}))";
  const server = JSON.parse(execFileSync(PYTHON, ["-c", script], { cwd: REPO, encoding: "utf8" }));
  assert.deepEqual({ ...sdk.CLOSE_ADVICE }, server);
  assert.equal(sdk.adviceFor(1006), sdk.Reconnect.AT_ONCE);
  assert.equal(sdk.adviceFor(4999), sdk.Reconnect.BACKOFF);
});

test("cursor: deliver in order, drop duplicates by seq and by id, call gaps", () => {
  const c = new sdk.ChannelCursor("c", null);
  assert.equal(c.check(1, "e", "a"), "gap", "no position yet");
  c.onSubscribed("replay", "e", 5);
  assert.equal(c.seq, 0);
  assert.equal(c.check(1, "e", "a"), "deliver");
  c.commit(1, "a");
  assert.equal(c.check(1, "e", "a"), "duplicate");
  assert.equal(c.check(1, "e", "other-id"), "duplicate", "by seq");
  assert.equal(c.check(2, "e", "a"), "duplicate", "by id");
  assert.equal(c.check(3, "e", "c"), "gap");
  assert.equal(c.check(2, "other-epoch", "b"), "gap");
  c.onSubscribed("snapshot", "f", 9);
  assert.equal(c.check(2, "f", "b"), "gap", "awaiting the snapshot");
  c.onSnapshot(7, "f");
  assert.equal(c.check(8, "f", "h"), "deliver");
  c.onSubscribed("reset", "g", 20);
  assert.deepEqual(c.position, { seq: 20, epoch: "g" });
  assert.deepEqual(c.subscribePayload(), { channel: "c", lastSeq: 20, epoch: "g" });
  assert.deepEqual(new sdk.ChannelCursor("d", null).subscribePayload(), { channel: "d" });
});

test("backoff: full jitter below an exponential ceiling, capped", () => {
  const b = { base: 500, cap: 20_000 };
  assert.deepEqual([0, 1, 2, 6, 50].map((n) => sdk.backoffCeiling(b, n)), [500, 1000, 2000, 20_000, 20_000]);
  const random = seeded(3);
  const delays = Array.from({ length: 200 }, () => sdk.backoffDelay(b, 3, random));
  assert.ok(delays.every((d) => d >= 0 && d < 4000));
  assert.ok(Math.min(...delays) < 400 && Math.max(...delays) > 3600, "spread over the whole range");
});

test("web storage position store round-trips and ignores corrupt entries", () => {
  const map = new Map();
  const storage = { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, v), removeItem: (k) => map.delete(k) };
  const store = new sdk.WebStoragePositionStore(storage);
  store.save("a", { seq: 4, epoch: "e" });
  assert.deepEqual(new sdk.WebStoragePositionStore(storage).load("a"), { seq: 4, epoch: "e" });
  map.set("wsserver.position:b", "{not json");
  assert.equal(store.load("b"), null);
  store.forget("a");
  assert.equal(store.load("a"), null);
});

/** An AsyncStorage double whose writes take 5 ms; it counts them and the most in flight at once. */
function slowAsyncStorage() {
  const storage = {
    map: new Map(),
    writes: 0,
    inFlight: 0,
    maxInFlight: 0,
    getItem: async (k) => storage.map.get(k) ?? null,
    setItem: async (k, v) => {
      storage.maxInFlight = Math.max(storage.maxInFlight, ++storage.inFlight);
      await sleep(5);
      storage.map.set(k, v);
      storage.writes++;
      storage.inFlight--;
    },
    removeItem: async (k) => void storage.map.delete(k),
  };
  return storage;
}

test("AsyncStorage position store writes behind, one write in flight per channel, the latest wins", async () => {
  const storage = slowAsyncStorage();
  const map = storage.map;
  const store = new sdk.AsyncStoragePositionStore(storage);
  for (let seq = 1; seq <= 50; seq++) store.save("a", { seq, epoch: "e" });
  assert.deepEqual(await store.load("a"), { seq: 50, epoch: "e" }, "reads see the latest save at once");
  await store.drain();
  assert.equal(storage.maxInFlight, 1);
  assert.ok(storage.writes <= 3, `a burst collapses (${storage.writes} writes)`);
  assert.deepEqual(await new sdk.AsyncStoragePositionStore(storage).load("a"), { seq: 50, epoch: "e" });
  store.forget("a");
  await store.drain();
  assert.equal(map.size, 0);
});

test("reconnect delay: at-once codes start within base, backoff codes one step up, gap streaks climb, offline at the cap", () => {
  const b = { base: 100, cap: 2000 };
  const half = () => 0.5;
  const delay = (input) => sdk.reconnectDelay(b, input, half);
  const { AT_ONCE, BACKOFF, NEW_TOKEN } = sdk.Reconnect;
  // [advice, failures, streak, offline] → 0.5 × ceiling
  const table = [
    [AT_ONCE, 0, undefined, false, 50],
    [NEW_TOKEN, 0, undefined, false, 50],
    [AT_ONCE, 1, undefined, false, 100],
    [AT_ONCE, 3, undefined, false, 400],
    [BACKOFF, 0, undefined, false, 100],
    [BACKOFF, 2, undefined, false, 400],
    [AT_ONCE, 9, undefined, false, 1000], // capped
    [AT_ONCE, 0, 1, false, 50], // a first gap: as any drop
    [AT_ONCE, 0, 4, false, 400], // the 4th gap in a row on one channel
    [AT_ONCE, 5, 2, false, 1000], // failures win when higher
    [AT_ONCE, 0, undefined, true, 1000], // offline: below the cap
    [BACKOFF, 1, 3, true, 1000],
  ];
  for (const [advice, failures, streak, offline, expected] of table) {
    assert.equal(delay({ advice, failures, streak, offline }), expected, JSON.stringify({ advice, failures, streak, offline }));
  }
  const random = seeded(5);
  const draws = Array.from({ length: 100 }, () => sdk.reconnectDelay(b, { advice: AT_ONCE, failures: 0 }, random));
  assert.ok(draws.every((d) => d >= 0 && d < 100) && new Set(draws).size === 100, "never a fixed 0: a draw below base");
});

test("cursor trouble streak: grows while a channel fails at the same place, ends once past it", () => {
  const c = new sdk.ChannelCursor("c", { seq: 4, epoch: "e" });
  c.onSubscribed("replay", "e", 10);
  assert.equal(c.troubleAt(5, "e"), 1);
  c.onSubscribed("replay", "e", 10); // resubscribed from 4: not past 5 yet
  assert.equal(c.troubleAt(5, "e"), 2);
  c.commit(5, "id5");
  assert.equal(c.streak, 0, "healed once 5 was taken");
  assert.equal(c.troubleAt(7, "e"), 1, "a new trouble starts over");
  c.onSubscribed("reset", "f", 20);
  assert.equal(c.streak, 0, "another epoch: the trouble is moot");
  // a snapshot answer does not move the position until the snapshot is applied
  const s = new sdk.ChannelCursor("s", { seq: 1, epoch: "lost" });
  s.onSubscribed("snapshot", "new", 9);
  assert.deepEqual(s.subscribePayload(), { channel: "s", lastSeq: 1, epoch: "lost" });
  assert.equal(s.troubleAt(2, "new"), 1);
  s.onSubscribed("snapshot", "new", 9);
  assert.equal(s.streak, 1);
  s.onSnapshot(2, "new");
  assert.deepEqual([s.position, s.streak], [{ seq: 2, epoch: "new" }, 0]);
});

test("lifecycle state machine: offline is a hint the foreground overrides, no latch", () => {
  // [inputs from the initial state {foreground, online null}] → actions of the last input
  const fg = (on) => (m) => m.appState(on);
  const net = (online, network = null) => (m) => m.connectivity(online, network);
  const table = [
    ["first report: online", [net(true, "wifi")], []],
    ["first report: offline", [net(false)], ["offline"]],
    ["offline → online", [net(true), net(false), net(true)], ["online", "wake"]],
    ["online again, same network", [net(true, "wifi"), net(true, "wifi")], []],
    ["wifi → cellular", [net(true, "wifi"), net(true, "cellular")], ["wake"]],
    ["offline repeated: the hint again", [net(false), net(false)], ["offline"]],
    ["unknown changes nothing", [net(false), net(null)], []],
    ["unknown, then online: still back from offline", [net(false), net(null), net(true)], ["online", "wake"]],
    ["background", [fg(false)], []],
    ["foreground again", [fg(false), fg(true)], ["online", "wake"]],
    ["foreground twice", [fg(true)], []],
    ["foreground overrides offline", [net(false), fg(false), fg(true)], ["online", "wake"]],
    ["network back while in the background", [fg(false), net(false), net(true)], ["online", "wake"]],
    // Android's stuck case: a new network appears, then the old one is reported lost
    ["Ethernet → Wi-Fi: available(new), lost(old)", [net(true, "ethernet"), net(true, "wifi"), net(false)], ["offline"]],
    ["… then the foreground clears it", [net(true, "ethernet"), net(true, "wifi"), net(false), fg(false), fg(true)], ["online", "wake"]],
  ];
  for (const [name, inputs, expected] of table) {
    const m = new sdk.LifecycleMachine();
    let actions = [];
    for (const input of inputs) actions = input(m);
    assert.deepEqual(actions, expected, name);
  }
  assert.deepEqual(new sdk.LifecycleMachine({ foreground: false }).appState(true), ["online", "wake"]);
});

/** A client double that records what the lifecycle asks of it. */
function lifecycleTarget() {
  const calls = [];
  const target = { reconnectNow: () => calls.push("wake"), setOffline: (off) => calls.push(off ? "offline" : "online") };
  return { calls, client: { lifecycle: new sdk.Lifecycle(target) } };
}

test("browser hooks: online/offline/visibility feed the lifecycle, and detach", () => {
  const { calls, client } = lifecycleTarget();
  const win = new EventTarget();
  const doc = Object.assign(new EventTarget(), { visibilityState: "hidden" });
  const detach = sdk.attachBrowserHooks(client, win, doc); // a page that starts hidden
  win.dispatchEvent(new Event("offline"));
  win.dispatchEvent(new Event("online"));
  doc.dispatchEvent(new Event("visibilitychange")); // still hidden: nothing
  doc.visibilityState = "visible";
  doc.dispatchEvent(new Event("visibilitychange"));
  assert.deepEqual(calls, ["offline", "online", "wake", "online", "wake"]);
  detach();
  win.dispatchEvent(new Event("offline"));
  assert.equal(calls.length, 5);
});

test("React Native hooks: AppState and NetInfo feed one lifecycle, and detach", () => {
  const { calls, client } = lifecycleTarget();
  let appListener = null;
  const appState = { currentState: "active", addEventListener: (_type, fn) => ((appListener = fn), { remove: () => (appListener = null) }) };
  let netListener = null;
  const netInfo = { addEventListener: (fn) => ((netListener = fn), () => (netListener = null)) };
  const offApp = sdk.attachAppStateHooks(client, appState);
  const offNet = sdk.attachNetInfo(client, netInfo);
  netListener({ type: "wifi", isConnected: true, isInternetReachable: null }); // NetInfo's first report
  netListener({ type: "wifi", isConnected: true, isInternetReachable: false }); // known unreachable: a hint
  appListener("inactive"); // iOS passing through: nothing
  appListener("background");
  appListener("active"); // overrides the offline hint
  netListener({ type: "cellular", isConnected: true, isInternetReachable: true });
  netListener({ type: "none", isConnected: null }); // unknown: nothing
  assert.deepEqual(calls, ["offline", "online", "wake", "online", "wake"]);
  offApp();
  offNet();
  assert.deepEqual([appListener, netListener], [null, null]);
});

test("outbox stores: Web Storage round-trips and drops corrupt entries", () => {
  const storage = mapStorage();
  const store = new sdk.WebStorageOutboxStore(storage);
  const r = (id, createdAt) => ({ id, channel: "c", event: "a.b", data: { id }, createdAt });
  store.add(r("1", 10));
  store.add(r("2", 20));
  assert.deepEqual(new sdk.WebStorageOutboxStore(storage).load().map((x) => x.id), ["1", "2"]);
  store.remove("1");
  assert.deepEqual(store.load(), [r("2", 20)]);
  storage.map.set("wsserver.outbox", JSON.stringify([r("3", 1), { id: "broken" }, "x"]));
  assert.deepEqual(store.load(), [r("3", 1)]);
  storage.map.set("wsserver.outbox", "{not json");
  assert.deepEqual(store.load(), []);
});

test("outbox stores: AsyncStorage writes behind, one write in flight, add resolves once written", async () => {
  const storage = slowAsyncStorage();
  const store = new sdk.AsyncStorageOutboxStore(storage);
  const records = Array.from({ length: 30 }, (_, i) => ({ id: `id${i}`, channel: "c", event: "a.b", data: { i }, createdAt: i }));
  await Promise.all(records.map((r) => store.add(r)));
  assert.equal(JSON.parse(storage.map.get("wsserver.outbox")).length, 30, "every add resolved after a write that has it");
  assert.equal(storage.maxInFlight, 1);
  assert.ok(storage.writes <= 3, `a burst collapses (${storage.writes} writes)`);
  await store.remove("id0");
  assert.deepEqual((await new sdk.AsyncStorageOutboxStore(storage).load()).map((r) => r.id), records.slice(1).map((r) => r.id));
});

test("MemoryOutboxStore and the outbox bounds: full is refused, an old entry expires, restored ones report by event", async () => {
  const store = new sdk.MemoryOutboxStore();
  const old = { id: "old", channel: "c", event: "a.b", data: {}, createdAt: Date.now() - 10_000 };
  store.add(old);
  const events = [];
  const sockets = [];
  class Socket {
    constructor() {
      this.readyState = 1;
      sockets.push(this);
      setTimeout(() => this.onopen?.({}), 0);
    }
    send(data) {
      const f = JSON.parse(data);
      if (f.type === "auth") {
        const payload = { sessionId: "s", userId: "u", expiresAt: 0, heartbeatInterval: 25_000, maxMessageSize: 65_536 };
        setTimeout(() => this.onmessage?.({ data: JSON.stringify({ type: "auth_ok", id: "x", timestamp: 0, payload }) }), 0);
      }
    }
    close() {}
  }
  const client = new sdk.Client({ url: "ws://x/ws", tokenProvider: () => "t", WebSocket: Socket, outbox: { store, maxEntries: 2, ttl: 5000 } });
  client.on("*", (e) => events.push(e));
  const first = client.publish("c", "a.b", { n: 1 });
  const second = client.publish("c", "a.b", { n: 2 });
  await assert.rejects(client.publish("c", "a.b", { n: 3 }), sdk.OutboxFull);
  assert.equal(store.load().length, 3, "the two new ones are stored before they go out");
  client.start();
  for (let i = 0; i < 100 && !events.some((e) => e.code === "expired"); i++) await sleep(10);
  const expired = events.find((e) => e.kind === "error" && e.code === "expired");
  assert.deepEqual([expired?.id, expired?.channel], ["old", "c"]);
  assert.deepEqual(store.load().map((r) => r.id).length, 2, "the expired one is gone from the store");
  await client.close();
  await assert.rejects(first, sdk.ClientClosed);
  await assert.rejects(second, sdk.ClientClosed);
  assert.equal(store.load().length, 2, "closing keeps them for the next client");
});

test("the CommonJS build loads with require() and matches the ESM API", () => {
  const cjs = createRequire(import.meta.url)("../dist/cjs/index.js");
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(sdk).sort());
  assert.ok(new cjs.ClientClosed("x") instanceof cjs.ClientError);
});

test("npm pack: an Apache-2.0 tarball of the built package that installs offline and loads both ways", { timeout: 120_000 }, () => {
  const tmp = mkdtempSync(join(tmpdir(), "ts-sdk-pack-"));
  try {
    const npm = (args, cwd) => execFileSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd, encoding: "utf8" });
    // --ignore-scripts: `npm test` runs after `npm run build`; a plain `npm pack` builds first (prepack)
    const [packed] = JSON.parse(npm(["pack", "--ignore-scripts", "--json", "--pack-destination", tmp], SDK_DIR));
    const files = packed.files.map((f) => f.path);
    for (const needed of ["README.md", "package.json", "dist/index.js", "dist/index.d.ts", "dist/cjs/index.js", "dist/cjs/package.json"]) {
      assert.ok(files.includes(needed), `${needed} in the tarball`);
    }
    assert.deepEqual(files.filter((f) => /^(src|test|scripts|node_modules)\/|conformance/.test(f)), []);
    const app = join(tmp, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true }));
    npm(["install", "--offline", join(tmp, packed.filename)], app);
    const installed = JSON.parse(readFileSync(join(app, "node_modules", "@wsserver", "client", "package.json"), "utf8"));
    assert.equal(installed.license, "Apache-2.0");
    const esm = execFileSync(process.execPath, ["--input-type=module", "-e", 'import("@wsserver/client").then((m) => console.log(typeof m.Client, typeof m.attachBrowserHooks))'], { cwd: app, encoding: "utf8" });
    const cjs = execFileSync(process.execPath, ["-e", 'const m = require("@wsserver/client"); console.log(typeof m.Client, typeof m.attachBrowserHooks)'], { cwd: app, encoding: "utf8" });
    assert.deepEqual([esm.trim(), cjs.trim()], ["function function", "function function"]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("the frame types come from docs/schema: a protocol change the SDK does not handle fails the type check", { timeout: 120_000 }, () => {
  const tmp = mkdtempSync(join(tmpdir(), "ts-sdk-drift-"));
  try {
    cpSync(join(SDK_DIR, "src"), join(tmp, "src"), { recursive: true, filter: (p) => !p.includes("generated") });
    rmSync(join(tmp, "src", "conformance.ts"));
    const tsconfig = JSON.parse(readFileSync(join(SDK_DIR, "tsconfig.json"), "utf8"));
    tsconfig.compilerOptions.noEmit = true;
    writeFileSync(join(tmp, "tsconfig.json"), JSON.stringify(tsconfig));
    writeFileSync(join(tmp, "package.json"), JSON.stringify({ type: "module" }));
    const check = (schemaDir) => {
      const env = { ...process.env, WSSERVER_SCHEMA_DIR: schemaDir, WSSERVER_TYPES_OUT: join(tmp, "src", "generated", "protocol.ts") };
      execFileSync(process.execPath, [join(SDK_DIR, "scripts", "gen-types.mjs")], { env });
      return spawnSync(process.execPath, [join(SDK_DIR, "node_modules", "typescript", "bin", "tsc"), "-p", join(tmp, "tsconfig.json")], { encoding: "utf8" });
    };
    const clean = check(join(REPO, "docs", "schema"));
    assert.equal(clean.status, 0, clean.stdout);

    const drifted = join(tmp, "schema");
    cpSync(join(REPO, "docs", "schema"), drifted, { recursive: true });
    const authOk = JSON.parse(readFileSync(join(drifted, "server", "auth_ok.json"), "utf8"));
    const p = authOk.properties.payload;
    p.properties.heartbeatIntervalMs = p.properties.heartbeatInterval; // a renamed field
    delete p.properties.heartbeatInterval;
    p.required = p.required.map((k) => (k === "heartbeatInterval" ? "heartbeatIntervalMs" : k));
    writeFileSync(join(drifted, "server", "auth_ok.json"), JSON.stringify(authOk));
    const pong = JSON.parse(readFileSync(join(drifted, "server", "pong.json"), "utf8"));
    pong.properties.type.const = "kicked"; // a new server frame type the client has no handler for
    writeFileSync(join(drifted, "server", "kicked.json"), JSON.stringify(pong));
    const broken = check(drifted);
    assert.notEqual(broken.status, 0);
    assert.match(broken.stdout, /heartbeatInterval/);
    assert.match(broken.stdout, /kicked/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
