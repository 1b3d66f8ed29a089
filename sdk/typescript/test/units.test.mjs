// The SDK's pure parts and build guarantees: the close-code table equals the server's, cursor
// verdicts, backoff bounds, position-store adapters, platform hooks, the CommonJS build, the npm
// tarball, and that a protocol change the SDK does not handle fails its type check.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import * as sdk from "../dist/index.js";
import { PYTHON, REPO, SDK_DIR, seeded, sleep } from "./support.mjs";

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

test("AsyncStorage position store writes behind, one write in flight per channel, the latest wins", async () => {
  const map = new Map();
  const writes = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const storage = {
    getItem: async (k) => map.get(k) ?? null,
    setItem: async (k, v) => {
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      await sleep(5);
      map.set(k, v);
      writes.push(v);
      inFlight--;
    },
    removeItem: async (k) => {
      map.delete(k);
    },
  };
  const store = new sdk.AsyncStoragePositionStore(storage);
  for (let seq = 1; seq <= 50; seq++) store.save("a", { seq, epoch: "e" });
  assert.deepEqual(await store.load("a"), { seq: 50, epoch: "e" }, "reads see the latest save at once");
  await store.drain();
  assert.equal(maxInFlight, 1);
  assert.ok(writes.length <= 3, `a burst collapses (${writes.length} writes)`);
  assert.deepEqual(await new sdk.AsyncStoragePositionStore(storage).load("a"), { seq: 50, epoch: "e" });
  store.forget("a");
  await store.drain();
  assert.equal(map.size, 0);
});

test("browser and AppState hooks call reconnectNow, and detach", () => {
  let calls = 0;
  const client = { reconnectNow: () => calls++ };
  const win = new EventTarget();
  const doc = Object.assign(new EventTarget(), { visibilityState: "hidden" });
  const detach = sdk.attachBrowserHooks(client, win, doc);
  win.dispatchEvent(new Event("online"));
  doc.dispatchEvent(new Event("visibilitychange")); // hidden: nothing to do
  doc.visibilityState = "visible";
  doc.dispatchEvent(new Event("visibilitychange"));
  assert.equal(calls, 2);
  detach();
  win.dispatchEvent(new Event("online"));
  assert.equal(calls, 2);

  let listener = null;
  const appState = { addEventListener: (_type, fn) => ((listener = fn), { remove: () => (listener = null) }) };
  const off = sdk.attachAppStateHooks(client, appState);
  listener("background");
  listener("active");
  assert.equal(calls, 3);
  off();
  assert.equal(listener, null);
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
