// The client against server doubles, for what the real server cannot be made to do on demand: an
// in-process double (test/support.mjs FakeServer) answering `rate_limited` on a publish, a subscribe
// or a token refresh (with and without `ref`), ending links right after `auth_ok`, replaying with a
// gap; and a small real WebSocket node (the `ws` package) that closes every link with 1001 right
// after `auth_ok`. Delays are drawn from a scripted or seeded `random`, so expected waits are exact.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket, { WebSocketServer } from "ws";
import { Client, DEFAULT_BACKOFF, Reconnect, backoffCeiling } from "../dist/index.js";
import { FakeServer, Recorder, seeded, sequence, sleep, until } from "./support.mjs";

const T = { timeout: 20_000 };

function fakeClient(fake, options = {}) {
  const client = new Client({ url: "ws://fake.invalid/ws", tokenProvider: () => "t", WebSocket: fake.WebSocket, random: () => 0.5, ...options });
  const rec = new Recorder(client);
  return { client, rec };
}

const rateLimited = (fake, socket, f) => fake.reply(socket, "error", { code: "rate_limited", message: "slow down", retryable: true }, f ? { ref: f.id } : {});

test("rate_limited publish: sent again, same id, after jittered backoff waits (not a fixed second)", T, async () => {
  const fake = new FakeServer();
  let refusals = 0;
  fake.on("publish", (socket, f) => {
    if (refusals++ >= 2) return true;
    rateLimited(fake, socket, f);
    return false;
  });
  const { client, rec } = fakeClient(fake, { backoff: { base: 200, cap: 5000 }, random: sequence(0.5, 0.6) });
  try {
    client.start();
    const result = await client.publish("room.1", "chat.msg", { n: 1 });
    assert.equal(result.seq, 1);
    const sends = fake.frames("publish");
    assert.equal(sends.length, 3);
    assert.equal(new Set(sends.map((s) => s.frame.id)).size, 1, "the same frame id every time");
    const errors = rec.of("error", (e) => e.code === "rate_limited");
    assert.deepEqual(errors.map((e) => e.retryIn), [100, 240], "uniform(0, base·2ⁿ): 0.5 × 200, then 0.6 × 400");
    assert.deepEqual(errors.map((e) => [e.id, e.channel]), [[result.id, "room.1"], [result.id, "room.1"]]);
    for (let i = 1; i < sends.length; i++) assert.ok(sends[i].at - sends[i - 1].at >= errors[i - 1].retryIn - 2, "not before its delay");
    assert.equal(client.stats.retries, 2);
    assert.equal(rec.of("reconnecting").length, 0);
  } finally {
    await client.close();
  }
});

test("rate_limited subscribe: subscribed after a jittered retry", T, async () => {
  const fake = new FakeServer();
  let refused = false;
  fake.on("subscribe", (socket, f) => {
    if (refused) return true;
    refused = true;
    rateLimited(fake, socket, f);
    return false;
  });
  const { client, rec } = fakeClient(fake, { backoff: { base: 100, cap: 1000 } });
  try {
    await client.subscribe("room.2");
    client.start();
    const sub = await rec.waitFor("subscribed");
    assert.equal(sub.channel, "room.2");
    const [error] = rec.of("error");
    assert.deepEqual([error.code, error.channel, error.retryIn], ["rate_limited", "room.2", 50]);
    assert.equal(fake.frames("subscribe").length, 2);
    await rec.waitFor("live");
  } finally {
    await client.close();
  }
});

test("rate_limited token refresh: the in-band auth is sent again with the same token", T, async () => {
  const fake = new FakeServer();
  let auths = 0;
  fake.on("auth", (socket, f) => {
    auths++;
    if (auths === 1) {
      setTimeout(() => fake.reply(socket, "token_expiring", { expiresAt: Date.now() + 5000, expiresIn: 5000 }), 10);
      return true;
    }
    if (auths === 2) {
      rateLimited(fake, socket, f);
      return false;
    }
    return true;
  });
  const { client, rec } = fakeClient(fake, { backoff: { base: 100, cap: 1000 }, tokenProvider: (reason) => (reason === "expiring" ? "fresh" : "first") });
  try {
    client.start();
    await until(() => fake.frames("auth").length === 3, "the refresh sent again");
    assert.deepEqual(fake.frames("auth").map((s) => s.frame.payload.token), ["first", "fresh", "fresh"]);
    const [error] = rec.of("error");
    assert.deepEqual([error.code, error.retryIn], ["rate_limited", 50]);
    await sleep(20);
    assert.equal(client.stats.connects, 1);
    assert.equal(client.state, "connected");
  } finally {
    await client.close();
  }
});

test("rate_limited without a ref (an older server dropped frames silently): everything unanswered is resent", T, async () => {
  const fake = new FakeServer();
  let dropped = 0;
  fake.on("publish", (socket) => {
    if (dropped >= 2) return true;
    if (dropped++ === 0) rateLimited(fake, socket, null); // one error per streak, without a ref
    return false; // dropped
  });
  const { client, rec } = fakeClient(fake, { backoff: { base: 100, cap: 1000 } });
  try {
    client.start();
    await rec.waitFor("connected");
    const a = client.publish("room.3", "chat.msg", { n: 1 });
    const b = client.publish("room.3", "chat.msg", { n: 2 });
    const results = await Promise.all([a, b]);
    assert.deepEqual(results.map((r) => r.seq).sort(), [1, 2]);
    const ids = fake.frames("publish").map((s) => s.frame.id);
    assert.equal(ids.length, 4, "each dropped publish sent twice");
    assert.equal(new Set(ids).size, 2);
    assert.equal(rec.of("error")[0].retryIn, 50);
  } finally {
    await client.close();
  }
});

test("an app listener that throws is reported as an error event, never rethrown from a timer", T, async () => {
  const fake = new FakeServer();
  const uncaught = [];
  const onUncaught = (error) => uncaught.push(error);
  process.on("uncaughtException", onUncaught);
  const logged = [];
  const consoleError = console.error;
  console.error = (...args) => logged.push(args);
  const { client, rec } = fakeClient(fake);
  try {
    client.on("connected", () => {
      throw new Error("connected listener bug");
    });
    client.on("reconnecting", () => {
      throw new TypeError("reconnecting listener bug");
    });
    let errorListenerCalls = 0;
    client.on("error", () => {
      if (errorListenerCalls++ === 0) throw new Error("error listener bug");
    });
    client.start();
    await rec.waitFor("connected");
    fake.drop(fake.last, 4009, "slow");
    await rec.waitFor("connected", undefined, { count: 2 });
    await sleep(50); // anything scheduled to rethrow would have run
    assert.deepEqual(uncaught, []);
    const reports = rec.of("error", (e) => e.code === "listener");
    assert.deepEqual(reports.map((e) => e.cause.message), ["connected listener bug", "reconnecting listener bug", "connected listener bug"]);
    assert.match(reports[0].message, /"connected" listener threw/);
    assert.equal(logged.length, 1, "the error listener's own failure goes to console.error");
    assert.equal(logged[0][1].message, "error listener bug");
    assert.equal(client.state, "connected");
  } finally {
    console.error = consoleError;
    process.off("uncaughtException", onUncaught);
    await client.close();
  }
});

test("failures are forgotten only after a stable link; backoff codes start one step up", T, async () => {
  const fake = new FakeServer();
  let linkMs = 0;
  let code = 1001;
  fake.on("auth", (socket) => {
    setTimeout(() => fake.drop(socket, code, "going away"), linkMs);
    return true; // auth_ok first: the old client forgot every failure here
  });
  const { client, rec } = fakeClient(fake, { backoff: { base: 20, cap: 1000 }, stableAfter: 150 });
  try {
    client.start();
    await rec.waitFor("reconnecting", undefined, { count: 3 });
    linkMs = 250; // the next link stays up beyond stableAfter
    await rec.waitFor("reconnecting", undefined, { count: 4 });
    linkMs = 0;
    code = 1013;
    await rec.waitFor("reconnecting", undefined, { count: 6 });
    const rcs = rec.of("reconnecting");
    assert.deepEqual(rcs.map((r) => r.attempt), [1, 2, 3, 1, 2, 3]);
    // 0.5 × min(cap, 20·2ⁿ): n = failures (at once), n = failures + 1 (backoff)
    assert.deepEqual(rcs.map((r) => r.delay), [10, 20, 40, 10, 40, 80]);
    assert.deepEqual(rcs.map((r) => r.advice), [...Array(4).fill(Reconnect.AT_ONCE), Reconnect.BACKOFF, Reconnect.BACKOFF]);
    assert.deepEqual(rec.of("connecting").map((c) => c.attempt).slice(0, 5), [0, 1, 2, 3, 1]);
  } finally {
    await client.close();
  }
});

test("offline (through client.lifecycle) is a hint: retries wait below the cap until a link authenticates", T, async () => {
  const fake = new FakeServer();
  let refuse = true;
  fake.on("auth", (socket) => {
    if (!refuse) return true;
    fake.drop(socket, 1001, "going away"); // before auth_ok
    return false;
  });
  const { client, rec } = fakeClient(fake, { backoff: { base: 20, cap: 400 } });
  try {
    client.lifecycle.connectivity(false); // what the browser/NetInfo hooks report
    client.start();
    await rec.waitFor("reconnecting", undefined, { count: 2 });
    refuse = false;
    await rec.waitFor("connected");
    fake.drop(fake.last, 1001, "going away");
    await rec.waitFor("reconnecting", undefined, { count: 3 });
    assert.deepEqual(rec.of("reconnecting").map((r) => r.delay), [200, 200, 40], "0.5 × cap while offline; then 0.5 × 20·2² again");
  } finally {
    await client.close();
  }
});

test("a wake (the network back, through client.lifecycle) resets the backoff: the next attempt comes within base", T, async () => {
  const fake = new FakeServer();
  fake.on("auth", (socket) => {
    fake.drop(socket, 1013, "overloaded");
    return false;
  });
  const { client, rec } = fakeClient(fake, { backoff: { base: 100, cap: 60_000 }, random: sequence(0.01, 0.01, 0.01, 0.01, 0.99) });
  try {
    client.start();
    await rec.waitFor("reconnecting", undefined, { count: 5 });
    const waiting = rec.of("reconnecting").at(-1);
    assert.ok(waiting.delay > 3000, `a long wait by now (${waiting.delay} ms)`);
    const sockets = fake.sockets.length;
    client.lifecycle.connectivity(false);
    client.lifecycle.connectivity(true); // back online: a wake
    client.reconnectNow(); // wakes closer together than base count as one
    await until(() => fake.sockets.length > sockets, "the attempt after the wake", 2000);
    assert.equal(rec.of("connecting").at(-1).attempt, 0);
    const next = await rec.waitFor("reconnecting", undefined, { count: 6 });
    assert.equal(next.delay, 0.99 * 200, "after the wake, the failures start over");
  } finally {
    await client.close();
  }
});

test("a gap that keeps coming back on one channel escalates, even on links that stayed up", T, async () => {
  const fake = new FakeServer();
  fake.on("subscribe", (socket, f) => {
    fake.reply(socket, "subscribed", { channel: "g", epoch: "e", headSeq: 5, recovery: "replay", replayCount: 5 }, { ref: f.id });
    // seq 1 never comes: after the link is stable, seq 2 arrives, a gap every time
    setTimeout(() => fake.reply(socket, "message.new", { n: 2 }, { channel: "g", seq: 2, epoch: "e" }), 60);
    return false;
  });
  const { client, rec } = fakeClient(fake, { backoff: { base: 20, cap: 1000 }, stableAfter: 40 });
  try {
    await client.subscribe("g", { lastSeq: 0 });
    client.start();
    await rec.waitFor("reconnecting", undefined, { count: 3 });
    const rcs = rec.of("reconnecting");
    assert.deepEqual(rcs.map((r) => r.attempt), [1, 1, 1], "each link was stable");
    assert.deepEqual(rcs.map((r) => r.delay), [10, 20, 40], "but the channel's streak climbs");
    const gaps = rec.of("error", (e) => e.code === "gap");
    assert.deepEqual(gaps.map((e) => [e.channel, e.seq]), [["g", 2], ["g", 2], ["g", 2]]);
    assert.equal(client.position("g").seq, 0);
  } finally {
    await client.close();
  }
});

const STORM_MS = 4000;
/** The old client made 180+ connections a second here; with the backoff it is a handful. */
const MAX_CONNECTIONS = 10;

function intervals(times) {
  return times.slice(1).map((t, i) => t - times[i]);
}

test("a node that closes 1001 right after auth_ok sees a bounded, jittered number of connections", { timeout: 20_000 }, async () => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((ok) => wss.once("listening", ok));
  const arrivals = [];
  wss.on("connection", (ws) => {
    arrivals.push(performance.now());
    ws.once("message", () => {
      const payload = { sessionId: "s", userId: "u", expiresAt: Date.now() + 600_000, heartbeatInterval: 25_000, maxMessageSize: 65_536 };
      ws.send(JSON.stringify({ type: "auth_ok", id: crypto.randomUUID(), timestamp: Date.now(), payload }));
      ws.close(1001, "going away");
    });
  });
  // the SDK's default backoff (500 ms doubling to 20 s, stable after 10 s), seeded
  const client = new Client({ url: `ws://127.0.0.1:${wss.address().port}/ws`, tokenProvider: () => "token", WebSocket, random: seeded(21) });
  const rec = new Recorder(client);
  try {
    client.start();
    await sleep(STORM_MS);
    await client.close();
    console.log(`# fake node closing 1001 after auth_ok for ${STORM_MS} ms: ${arrivals.length} connections ` +
      `(intervals ${intervals(arrivals).map((d) => d.toFixed(0)).join(", ")} ms)`);
    assert.ok(arrivals.length >= 2, "it does reconnect");
    assert.ok(arrivals.length <= MAX_CONNECTIONS, `${arrivals.length} connections in ${STORM_MS} ms`);
    assert.equal(rec.of("connected").length, arrivals.length, "every link got auth_ok");
    const rcs = rec.of("reconnecting");
    for (const r of rcs) assert.ok(r.delay > 0 && r.delay <= backoffCeiling(DEFAULT_BACKOFF, r.attempt - 1), `attempt ${r.attempt}: ${r.delay} ms`);
    assert.ok(new Set(rcs.map((r) => Math.round(r.delay))).size > 1, "jittered, not one fixed delay");
    assert.ok(new Set(intervals(arrivals).map((d) => Math.round(d / 5))).size > 1, "the server saw uneven intervals");
  } finally {
    await client.close();
    await new Promise((ok) => wss.close(ok));
  }
});
