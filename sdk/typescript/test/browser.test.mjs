// End to end in real headless Chromium (Debian's, driven by playwright-core): the built ESM SDK
// on a page served from 127.0.0.1 connects to the real server, survives a forced drop with
// replay, keeps its positions and its outbox in localStorage, and is refused from an Origin not allowed.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join, normalize } from "node:path";
import { after, before, describe, test } from "node:test";
import { SDK_DIR, ServerProcess, makeToken, user } from "./support.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const PAGE = `<!doctype html><meta charset="utf-8"><title>wsserver SDK</title>
<script type="module">
  import * as sdk from "/dist/index.js";
  window.sdk = sdk;
  window.events = [];
  window.ready = true;
</script>`;
const TYPES = { ".js": "text/javascript", ".html": "text/html", ".map": "application/json" };

/** Serves the test page and dist/ on 127.0.0.1 (so the page has an Origin); resolves with its origin. */
function serveSdk() {
  const http = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/" || path === "/index.html") {
      res.writeHead(200, { "Content-Type": "text/html" }).end(PAGE);
      return;
    }
    const file = normalize(join(SDK_DIR, path));
    if (!path.startsWith("/dist/") || !file.startsWith(join(SDK_DIR, "dist")) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": TYPES[file.slice(file.lastIndexOf("."))] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise((ok) => http.listen(0, "127.0.0.1", () => ok({ http, origin: `http://127.0.0.1:${http.address().port}` })));
}

/** Starts a client on the page; its events go to `window.events`, positions and the outbox to localStorage. */
async function startPageClient(page, wsUrl, token) {
  await page.waitForFunction(() => window.ready === true);
  await page.evaluate(
    ([url, token]) => {
      const { Client, WebStorageOutboxStore, WebStoragePositionStore, attachBrowserHooks } = window.sdk;
      window.client = new Client({
        url,
        tokenProvider: () => token,
        positions: new WebStoragePositionStore(window.localStorage),
        outbox: { store: new WebStorageOutboxStore(window.localStorage) },
        backoff: { base: 300, cap: 600 },
        heartbeatSlack: 500,
      });
      window.detach = attachBrowserHooks(window.client);
      window.client.on("*", (event) => window.events.push(event));
      window.client.start();
    },
    [wsUrl, token],
  );
}

const kinds = (page, kind) => page.evaluate((kind) => window.events.filter((e) => e.kind === kind), kind);
const waitKind = (page, kind, count = 1) =>
  page.waitForFunction(([kind, count]) => window.events.filter((e) => e.kind === kind).length >= count, [kind, count], { timeout: 10_000 });

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`${CHROMIUM} is missing: CI must install Debian's chromium`);

describe("in headless Chromium", { skip: haveChromium ? false : `no ${CHROMIUM} (apt-get install chromium)` }, () => {
  let server;
  let site;
  let foreign;
  let browser;
  before(async () => {
    const { chromium } = await import("playwright-core");
    [site, foreign] = await Promise.all([serveSdk(), serveSdk()]);
    server = await ServerProcess.start({
      WSSERVER_ALLOWED_ORIGINS: site.origin,
      WSSERVER_HEARTBEAT_INTERVAL: "0.3",
      WSSERVER_HEARTBEAT_TIMEOUT: "0.5",
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30_000 });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    site?.http.close();
    foreign?.http.close();
  });

  test("connects, survives a forced drop with replay, keeps positions in localStorage", { timeout: 60_000 }, async () => {
    const page = await browser.newPage();
    page.on("pageerror", (error) => console.log(`# page error: ${error}`));
    try {
      await page.goto(site.origin + "/");
      const sub = user();
      const channel = `browser.${sub}`;
      await startPageClient(page, server.wsUrl, makeToken(sub));
      await page.evaluate((channel) => window.client.subscribe(channel, { lastSeq: 0 }), channel);
      await waitKind(page, "live");
      for (let i = 0; i < 3; i++) await server.publish(channel, { i });
      await waitKind(page, "event", 3);

      const { body } = await server.disconnect(sub, 1011, "forced drop"); // backoff: the next events are missed
      assert.equal(body.disconnected, 1);
      for (let i = 3; i < 6; i++) await server.publish(channel, { i });
      await waitKind(page, "event", 6);

      const [rc] = await kinds(page, "reconnecting");
      assert.deepEqual([rc.code, rc.advice, rc.attempt], [1011, "backoff", 1]);
      const subs = await kinds(page, "subscribed");
      assert.equal(subs.length, 2);
      assert.equal(subs[1].mode, "replay");
      const events = await kinds(page, "event");
      assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4, 5, 6]);
      assert.deepEqual(events.map((e) => e.payload.i), [0, 1, 2, 3, 4, 5]);
      const stored = await page.evaluate((channel) => window.localStorage.getItem(`wsserver.position:${channel}`), channel);
      assert.deepEqual(JSON.parse(stored), { seq: 6, epoch: subs[1].epoch });

      const [result, whileSending] = await page.evaluate((channel) => {
        const sending = window.client.publish(channel, "browser.msg", { from: "page" });
        const kept = JSON.parse(window.localStorage.getItem("wsserver.outbox")).length;
        return sending.then((r) => [r, kept]);
      }, channel);
      assert.equal(result.seq, 7);
      assert.equal(whileSending, 1, "in the localStorage outbox until acknowledged");
      assert.equal(await page.evaluate(() => window.localStorage.getItem("wsserver.outbox")), "[]");
      await page.evaluate(() => window.client.close());
      assert.equal(await page.evaluate(() => window.client.state), "closed");
    } finally {
      await page.close();
    }
  });

  test("a page from an Origin not in allowed_origins is refused at the handshake", { timeout: 60_000 }, async () => {
    const page = await browser.newPage();
    try {
      await page.goto(foreign.origin + "/");
      await startPageClient(page, server.wsUrl, makeToken(user()));
      await waitKind(page, "reconnecting", 2);
      const attempts = await kinds(page, "reconnecting");
      assert.equal((await kinds(page, "connected")).length, 0);
      for (const rc of attempts) assert.equal(rc.code, 1006); // a browser sees a refused handshake as 1006
      // The same server accepts the allowed Origin (previous test) and refuses this one with 403:
      const { default: WS } = await import("ws");
      const status = await new Promise((ok) => {
        const ws = new WS(server.wsUrl, { origin: foreign.origin });
        ws.on("unexpected-response", (_req, res) => ok(res.statusCode));
        ws.on("open", () => ok("open"));
        ws.on("error", () => {});
      });
      assert.equal(status, 403);
      await page.evaluate(() => window.client.close());
    } finally {
      await page.close();
    }
  });
});
