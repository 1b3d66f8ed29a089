// Through the project's chaos proxy (resets, stalls, black holes, network switches, latency):
// SDK clients and the conformance client must lose nothing and deliver nothing twice.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { FAST_ENV, SDK_DIR, ServerProcess, makeToken, sleep, staticTokens, startChaosProxy, startClient, user } from "./support.mjs";

// Per connection: a reset every ~1.5 s, a stall every ~2 s, a black hole every ~4 s; switches every ~3 s.
const FAULTS = ["--profile", "clean", "--seed", "7", "--latency", "0.01", "--jitter", "0.02", "--reset-every", "1.5",
  "--stall-every", "2", "--blackhole-every", "4", "--switch-every", "3", "--switch-outage", "0.3"];

/** Events a run publishes over HTTP, paced so the faults hit while they flow. */
async function publishPaced(server, channels, count) {
  for (let i = 0; i < count; i++) {
    for (const channel of channels) await server.publish(channel, { i });
    if (i % 10 === 9) await sleep(50);
  }
}

describe("through the chaos proxy", () => {
  let server;
  let proxy;
  before(async () => {
    server = await ServerProcess.start(FAST_ENV);
    proxy = await startChaosProxy(server.port, FAULTS);
  });
  after(async () => {
    await proxy?.stop();
    await server?.close();
  });

  test("SDK clients: every event exactly once and in order, every publish stored once", { timeout: 90_000 }, async () => {
    const channels = [`chaos.a.${user()}`, `chaos.b.${user()}`];
    const perClient = 10;
    const total = 150;
    const clients = [];
    for (let c = 0; c < 5; c++) {
      const sub = user();
      const { client, rec } = startClient(proxy.url, staticTokens(sub), { backoff: { base: 50, cap: 500 } });
      for (const channel of channels) await client.subscribe(channel, { lastSeq: 0 });
      clients.push({ client, rec, sub });
    }
    try {
      const publishing = clients.map(async ({ client }, c) => {
        const results = [];
        for (let i = 0; i < perClient; i++) results.push(await client.publish(`chaos.pub.${channels[0]}`, "chaos.msg", { c, i }));
        return results;
      });
      await publishPaced(server, channels, total);
      const results = (await Promise.all(publishing)).flat();
      const deadline = Date.now() + 60_000;
      for (const { rec } of clients) {
        for (const channel of channels) {
          await rec.waitFor("event", (e) => e.channel === channel, { count: total, timeout: Math.max(1, deadline - Date.now()) });
        }
      }
      let reconnects = 0;
      const catchUps = clients.flatMap(({ rec }) => rec.of("live").slice(1).map((e) => e.catchUp)).sort((a, b) => a - b);
      const pct = (q) => (catchUps.length ? catchUps[Math.min(catchUps.length - 1, Math.floor(q * catchUps.length))].toFixed(0) : "-");
      for (const { client, rec } of clients) {
        for (const channel of channels) {
          assert.deepEqual(rec.seqs(channel), Array.from({ length: total }, (_, k) => k + 1), "lost or duplicated");
          const ids = rec.of("event", (e) => e.channel === channel).map((e) => e.id);
          assert.equal(new Set(ids).size, ids.length);
        }
        reconnects += client.stats.reconnects;
      }
      const { body } = await server.api("GET", `/api/v1/channels/chaos.pub.${channels[0]}/history?after=0&limit=1000`);
      const stored = body.events.map((e) => `${e.payload.c}:${e.payload.i}`);
      assert.equal(stored.length, 5 * perClient, "every client publish stored exactly once");
      assert.equal(new Set(stored).size, stored.length);
      assert.equal(new Set(results.map((r) => r.seq)).size, results.length);
      assert.ok(reconnects >= 5, `the proxy should have forced reconnects (saw ${reconnects})`);
      console.log(`# chaos: clients=5 events=${2 * total} per client, reconnects=${reconnects}, losses=0, duplicates=0, ` +
        `catch-up (attempt start → live) p50=${pct(0.5)} ms p99=${pct(0.99)} ms over ${catchUps.length} reconnects`);
    } finally {
      await Promise.all(clients.map(({ client }) => client.close()));
    }
  });

  test("the conformance client (CONTRACT §7) completes with 0 lost and 0 duplicated", { timeout: 90_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "ts-conformance-"));
    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, makeToken(user()));
    const channels = [`conf.a.${user()}`, `conf.b.${user()}`];
    const publishChannel = `conf.pub.${user()}`;
    const total = 100;
    try {
      await publishPaced(server, channels, 30);
      const child = spawn(process.execPath, [join(SDK_DIR, "dist", "conformance.js"), "--url", proxy.url,
        "--token-file", tokenFile, "--channel", channels[0], "--channel", channels[1], "--until-seq", String(total),
        "--publish-channel", publishChannel, "--publish-count", "10"], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.on("data", (chunk) => (out += chunk));
      const exited = new Promise((ok) => child.on("exit", (code) => ok(code)));
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      writeFileSync(tokenFile, makeToken(user())); // token rotation: read whenever one is needed
      for (let i = 30; i < total; i++) {
        for (const channel of channels) await server.publish(channel, { i });
        if (i % 10 === 9) await sleep(50);
      }
      const code = await exited;
      clearTimeout(timer);
      const lines = out.trim().split("\n").map((line) => JSON.parse(line));
      assert.equal(code, 0, out);
      assert.deepEqual(lines.at(-1), { done: true });
      for (const channel of channels) {
        const seqs = lines.filter((l) => l.event?.channel === channel).map((l) => l.event.seq);
        assert.deepEqual(seqs, Array.from({ length: total }, (_, k) => k + 1), `${channel}: lost or duplicated`);
      }
      assert.deepEqual(lines.filter((l) => l.published).map((l) => l.published.index), [...Array(10).keys()]);
      assert.ok(lines.some((l) => l.recovery?.mode === "replay"));
      assert.ok(lines.some((l) => l.state === "connected"));
      const { body } = await server.api("GET", `/api/v1/channels/${publishChannel}/history?after=0&limit=100`);
      assert.deepEqual(body.events.map((e) => e.payload.index), [...Array(10).keys()], "each publish stored once, in order");
      const reconnects = lines.filter((l) => l.state === "reconnecting").length;
      console.log(`# conformance through chaos: events=${2 * total}, reconnects=${reconnects}, losses=0, duplicates=0`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test("the conformance client exits non-zero with a fatal line when the SDK gives up", { timeout: 30_000 }, async () => {
  const server = await ServerProcess.start();
  const dir = mkdtempSync(join(tmpdir(), "ts-conformance-"));
  try {
    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, makeToken("x", { secret: "wrong".repeat(8) }));
    const child = spawn(process.execPath, [join(SDK_DIR, "dist", "conformance.js"), "--url", server.wsUrl,
      "--token-file", tokenFile, "--channel", "c.1", "--until-seq", "1"], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk) => (out += chunk));
    const code = await new Promise((ok) => child.on("exit", ok));
    const lines = out.trim().split("\n").map((line) => JSON.parse(line));
    assert.notEqual(code, 0);
    assert.match(lines.at(-1).fatal, /^closed 4001/);
    assert.deepEqual(lines.filter((l) => l.state).map((l) => l.state), ["connecting", "reconnecting", "connecting", "closed"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await server.close();
  }
});
