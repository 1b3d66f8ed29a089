// The SDK against a real server: replay and live order, every close code's reconnect advice and
// the backoff discipline, token refresh (and its race with a drop), snapshot and reset, listeners
// that throw (redelivery), the dead-link probe, outbox exactly-once (durable, app ids), positions.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import {
  ClientClosed,
  DEFAULT_BACKOFF,
  MemoryPositionStore,
  MessageTooBig,
  PublishRefused,
  Reconnect,
  WebStorageOutboxStore,
  backoffCeiling,
} from "../dist/index.js";
import {
  FAST_ENV,
  ServerProcess,
  WAIT,
  withServer,
  lossyLink,
  makeToken,
  mapStorage,
  seeded,
  sleep,
  staticTokens,
  startClient,
  until,
  user,
} from "./support.mjs";

const T = { timeout: 30_000 };

describe("against one shared server", () => {
  let server;
  before(async () => {
    server = await ServerProcess.start(FAST_ENV);
  });
  after(async () => {
    await server?.close();
  });

  test("replay then live, in order, once", T, async () => {
    const channel = `room.${user()}`;
    for (let i = 0; i < 5; i++) await server.publish(channel, { i });
    const { client, rec } = startClient(server.wsUrl, staticTokens(user()));
    try {
      await client.subscribe(channel, { lastSeq: 0 });
      const sub = await rec.waitFor("subscribed");
      assert.deepEqual([sub.mode, sub.replayCount], ["replay", 5]);
      await rec.waitFor("live");
      for (let i = 5; i < 10; i++) await server.publish(channel, { i });
      await rec.waitFor("event", undefined, { count: 10 });
      assert.deepEqual(rec.seqs(channel), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.deepEqual(rec.of("event").map((e) => e.payload.i), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.deepEqual(client.position(channel), { seq: 10, epoch: sub.epoch });
      assert.equal(client.state, "connected");
    } finally {
      await client.close();
    }
  });

  for (const [code, advice] of [
    [1001, Reconnect.AT_ONCE],
    [4009, Reconnect.AT_ONCE],
    [4008, Reconnect.AT_ONCE],
    [1011, Reconnect.BACKOFF],
    [1013, Reconnect.BACKOFF],
    [4029, Reconnect.BACKOFF],
  ]) {
    test(`close ${code} reconnects (${advice}) and resumes without loss`, T, async () => {
      const sub = user();
      const channel = `room.${user()}`;
      const { client, rec } = startClient(server.wsUrl, staticTokens(sub));
      try {
        await client.subscribe(channel, { lastSeq: 0 });
        await rec.waitFor("live");
        await server.publish(channel, { n: 1 });
        await rec.waitFor("event");
        const { status, body } = await server.disconnect(sub, code, "t");
        assert.deepEqual([status, body.disconnected], [200, 1]);
        await server.publish(channel, { n: 2 }); // while the client is away
        const rc = await rec.waitFor("reconnecting");
        assert.deepEqual([rc.code, rc.advice, rc.attempt], [code, advice, 1]);
        // "at once" is a draw below base (50 here), never a fixed 0; backoff codes start one step up
        const ceiling = advice === Reconnect.AT_ONCE ? 50 : 100;
        assert.ok(rc.delay > 0 && rc.delay <= ceiling, `full jitter below ${ceiling}: ${rc.delay}`);
        const again = await rec.waitFor("subscribed", undefined, { count: 2 });
        assert.equal(again.mode, "replay");
        await rec.waitFor("event", undefined, { count: 2 });
        assert.deepEqual(rec.seqs(channel), [1, 2]);
      } finally {
        await client.close();
      }
    });
  }

  for (const code of [1000, 4003]) {
    test(`close ${code} closes for good`, T, async () => {
      const sub = user();
      const { client, rec } = startClient(server.wsUrl, staticTokens(sub));
      await rec.waitFor("connected");
      await server.disconnect(sub, code, "bye");
      const closed = await rec.waitFor("closed");
      assert.deepEqual([closed.code, closed.reason], [code, "bye"]);
      assert.equal(client.state, "closed");
      assert.equal(rec.of("reconnecting").length, 0);
      assert.equal(client.stats.connects, 1);
      await assert.rejects(client.publish("room.x", "a.b", {}), ClientClosed);
    });
  }

  for (const code of [4001, 4002]) {
    test(`close ${code} asks for a new token first`, T, async () => {
      const sub = user();
      const provider = staticTokens(sub);
      const { client, rec } = startClient(server.wsUrl, provider);
      try {
        await rec.waitFor("connected");
        await server.disconnect(sub, code, "t");
        const rc = await rec.waitFor("reconnecting");
        assert.equal(rc.advice, Reconnect.NEW_TOKEN);
        assert.ok(rc.delay > 0 && rc.delay <= 50, `jittered below base: ${rc.delay}`);
        await rec.waitFor("connected", undefined, { count: 2 });
        assert.deepEqual(provider.reasons, ["connect", "rejected"]);
      } finally {
        await client.close();
      }
    });
  }

  test("a bad token, then a good one", T, async () => {
    const sub = user();
    const tokens = ["not-a-jwt", makeToken(sub)];
    const { client, rec } = startClient(server.wsUrl, () => tokens.shift());
    try {
      const rc = await rec.waitFor("reconnecting");
      assert.deepEqual([rc.code, rc.advice], [4001, Reconnect.NEW_TOKEN]);
      const connected = await rec.waitFor("connected");
      assert.equal(connected.userId, sub);
    } finally {
      await client.close();
    }
  });

  test("gives up when the provider repeats the rejected token", T, async () => {
    const bad = makeToken("x", { secret: "wrong".repeat(8) });
    const { client, rec } = startClient(server.wsUrl, async () => bad);
    const closed = await rec.waitFor("closed");
    assert.equal(closed.code, 4001);
    assert.match(closed.reason, /rejected/);
    assert.equal(client.stats.connects, 1);
    assert.equal((await client.closed).code, 4001);
  });

  test("no token from the provider: closed 4001", T, async () => {
    const { rec } = startClient(server.wsUrl, () => null);
    const closed = await rec.waitFor("closed");
    assert.deepEqual([closed.code, closed.reason], [4001, "the token provider has no token"]);
  });

  test("publish is acknowledged with its seq; refused publishes are not retried", T, async () => {
    const channel = `room.${user()}`;
    const { client, rec } = startClient(server.wsUrl, staticTokens(user(), { publish: ["room.*"] }));
    try {
      const results = [];
      for (let i = 0; i < 3; i++) results.push(await client.publish(channel, "chat.msg", { i }));
      assert.deepEqual(results.map((r) => r.seq), [1, 2, 3]);
      const { body } = await server.api("GET", `/api/v1/channels/${channel}/history?after=0&limit=10`);
      assert.deepEqual(body.events.map((e) => e.payload.i), [0, 1, 2]);
      const refused = await client.publish("theirs.1", "a.b", {}).then(
        () => null,
        (e) => e,
      );
      assert.ok(refused instanceof PublishRefused);
      assert.equal(refused.code, "forbidden");
      assert.equal(rec.of("reconnecting").length, 0);
    } finally {
      await client.close();
    }
  });

  test("outbox: publishes cut off by drops land exactly once, with the same frame id", T, async () => {
    const sub = user();
    const channel = `out.${sub}`;
    const { client, rec } = startClient(server.wsUrl, staticTokens(sub));
    try {
      await rec.waitFor("connected");
      const pending = [];
      for (let i = 0; i < 40; i++) {
        pending.push(client.publish(channel, "chat.msg", { i }));
        if (i % 10 === 5) await server.disconnect(sub, 4009, "drop"); // mid-stream, unacknowledged ones are resent
      }
      const results = await Promise.all(pending);
      assert.ok(rec.of("reconnecting").length >= 1);
      const { body } = await server.api("GET", `/api/v1/channels/${channel}/history?after=0&limit=100`);
      const stored = body.events.map((e) => e.payload.i).sort((a, b) => a - b);
      assert.deepEqual(stored, [...Array(40).keys()], "every publish stored exactly once");
      assert.equal(new Set(results.map((r) => r.seq)).size, 40);
      assert.equal(new Set(results.map((r) => r.id)).size, 40);
    } finally {
      await client.close();
    }
  });

  test("publish with the app's own id: the same id again gets the same answer and stores nothing new", T, async () => {
    const sub = user();
    const channel = `dup.${sub}`;
    const { client, rec } = startClient(server.wsUrl, staticTokens(sub));
    try {
      await rec.waitFor("connected");
      const id = randomUUID();
      const first = await client.publish(channel, "chat.msg", { once: true }, { id });
      assert.equal(first.id, id);
      const again = await client.publish(channel, "chat.msg", { once: true }, { id }); // e.g. the app's own queue retrying
      assert.deepEqual(again, first);
      const other = randomUUID();
      const pending = client.publish(channel, "chat.msg", { n: 2 }, { id: other });
      assert.equal(client.publish(channel, "chat.msg", { n: 2 }, { id: other }), pending, "while pending: the same promise");
      const second = await pending;
      const { body } = await server.api("GET", `/api/v1/channels/${channel}/history?after=0&limit=10`);
      assert.deepEqual(body.events.map((e) => e.seq), [1, 2]);
      assert.deepEqual([first.seq, second.seq], [1, 2]);
      assert.deepEqual(rec.of("published").map((e) => [e.id, e.seq]), [[id, 1], [id, 1], [other, 2]]);
      await assert.rejects(client.publish(channel, "chat.msg", {}, { id: "" }), TypeError);
      await assert.rejects(client.publish(channel, "chat.msg", {}, { id: "x".repeat(129) }), TypeError);
    } finally {
      await client.close();
    }
  });

  test("durable outbox: publishes a closed client left unacknowledged are sent by the next one, stored once", T, async () => {
    const sub = user();
    const channel = `outbox.${sub}`;
    const storage = mapStorage(); // what localStorage keeps across a reload
    const link = lossyLink();
    const a = startClient(server.wsUrl, staticTokens(sub), { WebSocket: link.WebSocket, outbox: { store: new WebStorageOutboxStore(storage) } });
    const history = async () => (await server.api("GET", `/api/v1/channels/${channel}/history?after=0&limit=100`)).body.events;
    let outcomes;
    try {
      await a.rec.waitFor("connected");
      link.mute = true; // the server stores these, its acks never arrive
      const sent = [0, 1, 2].map((i) => a.client.publish(channel, "chat.msg", { i }));
      for (const deadline = Date.now() + WAIT; (await history()).length < 3; ) {
        if (Date.now() > deadline) throw new Error("the server did not store the first three");
        await sleep(20);
      }
      link.blockSend = true; // these never leave the device
      const unsent = [3, 4].map((i) => a.client.publish(channel, "chat.msg", { i }));
      outcomes = [...sent, ...unsent].map((p) => p.then(() => null, (e) => e));
    } finally {
      await a.client.close();
    }
    for (const e of await Promise.all(outcomes)) assert.ok(e instanceof ClientClosed, String(e));
    assert.equal(new WebStorageOutboxStore(storage).load().length, 5, "kept for the next client");
    assert.equal((await history()).length, 3);

    const b = startClient(server.wsUrl, staticTokens(sub), { outbox: { store: new WebStorageOutboxStore(storage) } });
    try {
      await b.rec.waitFor("published", undefined, { count: 5 });
      const events = await history();
      assert.deepEqual(events.map((e) => e.payload.i).sort(), [0, 1, 2, 3, 4], "each stored exactly once");
      const bySeq = Object.fromEntries(events.map((e) => [e.seq, e.payload.i]));
      const acks = b.rec.of("published").map((e) => bySeq[e.seq]).sort();
      assert.deepEqual(acks, [0, 1, 2, 3, 4], "the first three got their first answers again");
      assert.equal(new WebStorageOutboxStore(storage).load().length, 0, "acknowledged: gone from the store");
      assert.equal(b.client.stats.publishesResent, 0);
    } finally {
      await b.client.close();
    }
  });

  test("a listener that throws on seq N gets seq N again; the stored position never skipped it", T, async () => {
    const channel = `room.${user()}`;
    for (let i = 0; i < 6; i++) await server.publish(channel, { i });
    const saves = [];
    const store = new (class extends MemoryPositionStore {
      save(ch, position) {
        saves.push(position.seq);
        super.save(ch, position);
      }
    })();
    const { client, rec } = startClient(server.wsUrl, staticTokens(user()), { positions: store });
    const seen = [];
    let failed = false;
    client.on("event", (e) => {
      seen.push(e.seq);
      if (e.seq === 3 && !failed) {
        failed = true;
        throw new Error("the app could not store event 3");
      }
    });
    try {
      await client.subscribe(channel, { lastSeq: 0 });
      await until(() => seen.includes(6), "events up to 6");
      await server.publish(channel, { i: 6 });
      await until(() => seen.includes(7), "the live event after");
      assert.deepEqual(seen, [1, 2, 3, 3, 4, 5, 6, 7]);
      assert.deepEqual(saves, [1, 2, 3, 4, 5, 6, 7], "the position never moved past 3 before 3 was taken");
      const [report] = rec.of("error");
      assert.deepEqual([report.code, report.channel, report.seq, report.cause.message], ["listener", channel, 3, "the app could not store event 3"]);
      assert.ok(report.retryIn >= 0 && report.retryIn <= 50, "redelivered after a jittered wait below base");
      assert.equal(rec.of("reconnecting").length, 0, "the channel was resubscribed, the link stayed");
      assert.deepEqual([client.stats.listenerFailures, client.stats.delivered], [1, 7]);
      assert.equal(store.load(channel).seq, 7);
    } finally {
      await client.close();
    }
  });

  test("a snapshot or reset listener that throws gets it again; nothing is applied before it returns", T, async () => {
    const plain = `plain.${user()}`;
    const snap = `snap.${user()}`;
    for (const channel of [plain, snap]) for (let i = 0; i < 4; i++) await server.publish(channel, { i });
    await server.api("PUT", `/api/v1/channels/${snap}/snapshot`, { state: { count: 2 }, seq: 2 });
    const { client, rec } = startClient(server.wsUrl, staticTokens(user()));
    const throwOnce = (kind) => {
      let thrown = false;
      client.on(kind, () => {
        if (!thrown) {
          thrown = true;
          throw new Error(`${kind} handler failed`);
        }
      });
    };
    throwOnce("reset");
    throwOnce("snapshot");
    try {
      await client.subscribe(plain, { lastSeq: 3, epoch: "an-epoch-that-was-lost" });
      await client.subscribe(snap, { lastSeq: 1, epoch: "an-epoch-that-was-lost" });
      await rec.waitFor("event", (e) => e.channel === snap && e.seq === 4);
      await rec.waitFor("reset", undefined, { count: 2 });
      assert.deepEqual(rec.of("snapshot").map((s) => [s.seq, s.state]), [[2, { count: 2 }], [2, { count: 2 }]]);
      assert.deepEqual(rec.of("reset").map((r) => [r.channel, r.headSeq]), [[plain, 4], [plain, 4]]);
      assert.deepEqual(rec.seqs(snap), [3, 4]);
      const kinds = rec.events.filter((e) => e.channel === snap && e.kind !== "error").map((e) => e.kind);
      assert.deepEqual(kinds, ["subscribed", "snapshot", "subscribed", "snapshot", "event", "event"]);
      assert.deepEqual(rec.of("error").map((e) => e.cause.message).sort(), ["reset handler failed", "snapshot handler failed"]);
      await until(() => client.position(plain)?.seq === 4, "the reset applied");
      await server.publish(plain, { i: 4 });
      await rec.waitFor("event", (e) => e.channel === plain);
      assert.deepEqual(rec.seqs(plain), [5]);
    } finally {
      await client.close();
    }
  });

  test("1001 from POST /api/v1/disconnect every 100 ms: a bounded, jittered number of connections", T, async () => {
    const sub = user();
    // the SDK's default backoff (500 ms doubling to 20 s, stable after 10 s), seeded
    const { client, rec } = startClient(server.wsUrl, staticTokens(sub), { backoff: DEFAULT_BACKOFF, random: seeded(21) });
    const stormMs = 4000;
    try {
      await rec.waitFor("connected");
      for (const end = Date.now() + stormMs; Date.now() < end; ) {
        await server.disconnect(sub, 1001, "rolling restart");
        await sleep(100);
      }
      const connects = client.stats.connects;
      console.log(`# real server, 1001 every 100 ms for ${stormMs} ms: ${connects} connections`);
      const rcs = rec.of("reconnecting");
      assert.ok(rcs.length >= 2, "it does reconnect");
      assert.ok(connects <= 10, `${connects} connections in ${stormMs} ms (the old client: one per disconnect)`);
      for (const r of rcs) {
        assert.equal(r.code, 1001);
        assert.ok(r.delay > 0 && r.delay <= backoffCeiling(DEFAULT_BACKOFF, r.attempt - 1), `attempt ${r.attempt}: ${r.delay} ms`);
      }
      assert.ok(new Set(rcs.map((r) => Math.round(r.delay))).size > 1, "jittered, not one fixed delay");
    } finally {
      await client.close();
    }
  });

  test("reset and snapshot surface to the app", T, async () => {
    const sub = user();
    const plain = `plain.${user()}`;
    const snap = `snap.${user()}`;
    for (const channel of [plain, snap]) for (let i = 0; i < 4; i++) await server.publish(channel, { i });
    const { status } = await server.api("PUT", `/api/v1/channels/${snap}/snapshot`, { state: { count: 2 }, seq: 2 });
    assert.equal(status, 204);
    const { client, rec } = startClient(server.wsUrl, staticTokens(sub));
    try {
      await client.subscribe(plain, { lastSeq: 3, epoch: "an-epoch-that-was-lost" });
      await client.subscribe(snap, { lastSeq: 1, epoch: "an-epoch-that-was-lost" });
      await rec.waitFor("live");
      const reset = await rec.waitFor("reset");
      assert.deepEqual([reset.channel, reset.headSeq], [plain, 4]);
      const snapshot = await rec.waitFor("snapshot");
      assert.deepEqual([snapshot.channel, snapshot.seq, snapshot.state], [snap, 2, { count: 2 }]);
      assert.deepEqual(rec.seqs(snap), [3, 4]);
      assert.deepEqual(rec.seqs(plain), []);
      await server.publish(plain, { i: 4 });
      await rec.waitFor("event", (e) => e.channel === plain);
      assert.deepEqual(rec.seqs(plain), [5]);
      const kinds = rec.events.filter((e) => e.channel === snap).map((e) => e.kind);
      assert.deepEqual(kinds, ["subscribed", "snapshot", "event", "event"]);
    } finally {
      await client.close();
    }
  });

  test("the position store resumes where the app left off", T, async () => {
    const channel = `room.${user()}`;
    for (let i = 0; i < 6; i++) await server.publish(channel, { i });
    const store = new MemoryPositionStore();
    let { client, rec } = startClient(server.wsUrl, staticTokens(user()), { positions: store });
    await client.subscribe(channel, { lastSeq: 0 });
    await rec.waitFor("event", undefined, { count: 6 });
    await client.close();
    assert.equal(store.load(channel).seq, 6);
    await server.publish(channel, { i: 6 });
    ({ client, rec } = startClient(server.wsUrl, staticTokens(user()), { positions: store }));
    try {
      await client.subscribe(channel, { lastSeq: 0 }); // the store's position wins
      await rec.waitFor("event");
      assert.deepEqual(rec.seqs(channel), [7]);
    } finally {
      await client.close();
    }
  });

  test("a black-holed link is found by the app-level ping and replayed", T, async () => {
    const link = lossyLink(); // swallows everything the server sends once muted: a half-open link
    const channel = `room.${user()}`;
    const { client, rec } = startClient(server.wsUrl, staticTokens(user()), { WebSocket: link.WebSocket });
    try {
      await client.subscribe(channel, { lastSeq: 0 });
      await rec.waitFor("live");
      link.mute = true;
      await server.publish(channel, { n: 1 });
      const rc = await rec.waitFor("reconnecting");
      assert.match(rc.reason, /dead link/);
      link.mute = false;
      await rec.waitFor("event");
      assert.deepEqual(rec.seqs(channel), [1]);
    } finally {
      await client.close();
    }
  });

  test("the app's close: state closed, pending publishes rejected, no reconnect", T, async () => {
    const { client, rec } = startClient(server.wsUrl, staticTokens(user()));
    await rec.waitFor("connected");
    await client.close();
    assert.equal(client.state, "closed");
    assert.deepEqual((await client.closed).code, 1000);
    await sleep(100);
    assert.equal(rec.of("reconnecting").length, 0);
  });
});

test("message too big: the oversized auth frame closes 1009 (backoff); a big publish is refused locally", T, async () => {
  await withServer({ WSSERVER_MAX_MESSAGE_SIZE: "1024" }, async (small) => {
    const sub = user();
    const tokens = [makeToken(sub, { pad: "x".repeat(1200) }), makeToken(sub)];
    const { client, rec } = startClient(small.wsUrl, () => tokens.shift());
    try {
      const rc = await rec.waitFor("reconnecting");
      assert.deepEqual([rc.code, rc.advice], [1009, Reconnect.BACKOFF]);
      await rec.waitFor("connected");
      await assert.rejects(client.publish("room.big", "a.b", { blob: "y".repeat(1200) }), MessageTooBig);
      const result = await client.publish("room.big", "a.b", { blob: "small" });
      assert.equal(result.seq, 1);
      assert.equal(client.state, "connected");
    } finally {
      await client.close();
    }
  });
});

describe("token refresh", () => {
  test("the server withdraws a subscription a refreshed token no longer allows", T, async () => {
    await withServer({ WSSERVER_TOKEN_EXPIRING_LEAD: "599.5" }, async (srv) => {
      const sub = user();
      const grants = [["a.*", "b.*"], ["a.*"]];
      const { client, rec } = startClient(srv.wsUrl, () => makeToken(sub, { channels: grants.shift() ?? ["a.*"] }));
      try {
        await client.subscribe("a.1");
        await client.subscribe("b.1");
        const gone = await rec.waitFor("unsubscribed");
        assert.equal(gone.channel, "b.1");
        assert.ok(gone.reason);
        assert.equal(client.position("b.1"), null);
        assert.equal(rec.of("reconnecting").length, 0);
      } finally {
        await client.close();
      }
    });
  });

  test("token_expiring: refreshed in-band, the connection stays", T, async () => {
    await withServer({ WSSERVER_TOKEN_EXPIRING_LEAD: "1.8" }, async (srv) => {
      const sub = user();
      const calls = [];
      const provider = async (reason) => {
        calls.push(reason);
        return makeToken(sub, { ttl: reason === "connect" ? 2 : 600 });
      };
      const { client, rec } = startClient(srv.wsUrl, provider);
      try {
        await client.subscribe("room.r", { lastSeq: 0 });
        await rec.waitFor("live");
        await until(() => calls.includes("expiring"), "the refresh");
        await sleep(2200); // past the first token's exp: a refresh that did not land would close 4002
        await srv.publish("room.r", {});
        await rec.waitFor("event");
        assert.equal(rec.of("reconnecting").length, 0);
        assert.equal(client.stats.connects, 1);
      } finally {
        await client.close();
      }
    });
  });

  test("expired without a refresh (4002): a new token, then reconnect", T, async () => {
    await withServer({ WSSERVER_TOKEN_EXPIRING_LEAD: "0.5" }, async (srv) => {
      const sub = user();
      const calls = [];
      const provider = (reason) => {
        calls.push(reason);
        if (reason === "expiring") return null; // the app cannot refresh now
        return makeToken(sub, { ttl: reason === "connect" ? 1.5 : 600 });
      };
      const { client, rec } = startClient(srv.wsUrl, provider);
      try {
        const rc = await rec.waitFor("reconnecting");
        assert.deepEqual([rc.code, rc.advice], [4002, Reconnect.NEW_TOKEN]);
        await rec.waitFor("connected", undefined, { count: 2 });
        assert.equal(calls.at(-1), "rejected");
      } finally {
        await client.close();
      }
    });
  });

  test("a refresh started on one connection never reaches the next", T, async () => {
    // Its late token is another user's: sent on the new connection, the server would close 4003.
    await withServer({ WSSERVER_TOKEN_EXPIRING_LEAD: "599.7", ...FAST_ENV }, async (srv) => {
      const sub = user();
      let release;
      const gate = new Promise((ok) => (release = ok));
      let expiringCalls = 0;
      const provider = async (reason) => {
        if (reason === "expiring" && ++expiringCalls === 1) {
          await gate;
          return makeToken("mallory");
        }
        return makeToken(sub);
      };
      const { client, rec } = startClient(srv.wsUrl, provider);
      try {
        await until(() => expiringCalls === 1, "the first refresh");
        await srv.disconnect(sub, 4009, "drop");
        await rec.waitFor("connected", undefined, { count: 2 });
        release();
        await until(() => expiringCalls >= 2, "the new connection's own refresh");
        await sleep(500);
        assert.equal(rec.of("closed").length, 0);
        assert.equal(client.state, "connected");
        assert.equal(rec.of("reconnecting").length, 1);
        assert.equal(rec.of("connected").at(-1).userId, sub);
      } finally {
        await client.close();
      }
    });
  });
});

test("server restart (1001) replays; a restart that lost the log surfaces reset with the new epoch", T, async () => {
  const { rmSync } = await import("node:fs");
  await withServer({}, async (srv) => {
    const channel = "room.restart";
    const { client, rec } = startClient(srv.wsUrl, staticTokens(user()), { backoff: { base: 50, cap: 300 } });
    try {
      await client.subscribe(channel, { lastSeq: 0 });
      await srv.publish(channel, { n: 1 });
      await rec.waitFor("event");
      await srv.restart();
      const rc = await rec.waitFor("reconnecting");
      assert.deepEqual([rc.code, rc.advice], [1001, Reconnect.AT_ONCE]);
      await rec.waitFor("subscribed", undefined, { count: 2, timeout: 2 * WAIT });
      await srv.publish(channel, { n: 2 });
      await rec.waitFor("event", undefined, { count: 2 });
      assert.deepEqual(rec.seqs(channel), [1, 2]);
      const epoch = rec.of("subscribed").at(-1).epoch;

      await srv.stop();
      rmSync(srv.dataDir, { recursive: true, force: true }); // the log is lost
      await srv.launch();
      const reset = await rec.waitFor("reset", undefined, { timeout: 2 * WAIT });
      assert.equal(reset.channel, channel);
      assert.notEqual(reset.epoch, epoch);
      await srv.publish(channel, { n: 3 });
      const event = await rec.waitFor("event", undefined, { count: 3 });
      assert.deepEqual([event.seq, event.epoch, event.payload], [1, reset.epoch, { n: 3 }]);
    } finally {
      await client.close();
    }
  });
});

test("reconnectNow after a frozen event loop finds a dead link by its probe, within the probe timeout", T, async () => {
  // A 30 s heartbeat: only the probe can find the dead link in time. The event loop is frozen long
  // enough that the watchdog's next tick comes late (as after a suspended phone or a frozen tab),
  // then reconnectNow() probes: that late tick must not count as an answer.
  await withServer({ WSSERVER_HEARTBEAT_INTERVAL: "30" }, async (srv) => {
    const link = lossyLink();
    const channel = `room.${user()}`;
    const { client, rec } = startClient(srv.wsUrl, staticTokens(user()), { WebSocket: link.WebSocket, probeTimeout: 300 });
    try {
      await client.subscribe(channel, { lastSeq: 0 });
      await rec.waitFor("live");
      await sleep(100);
      link.mute = true; // the link died unseen
      const frozenUntil = performance.now() + 1700; // > the watchdog's tick (500 ms) + 1 s: its next tick is late
      while (performance.now() < frozenUntil) {
        // the app (or the OS) holds the event loop
      }
      const wokeAt = performance.now();
      client.reconnectNow();
      const rc = await rec.waitFor("reconnecting", undefined, { timeout: 5000 });
      assert.match(rc.reason, /no answer to the probe in 300 ms/);
      assert.ok(performance.now() - wokeAt < 5000);
      link.mute = false;
      await srv.publish(channel, { n: 1 });
      await rec.waitFor("event");
      assert.deepEqual(rec.seqs(channel), [1]);
    } finally {
      await client.close();
    }
  });
});
