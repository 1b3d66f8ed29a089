// The SDK conformance client of CONTRACT §7 (`node dist/conformance.js`), built only on the
// package's public API over Node's `ws`; prints one JSON object per line for a black-box harness.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { Client, ClientClosed, type ClientEvent, type WebSocketConstructor } from "./index.js";

const USAGE = `usage: node dist/conformance.js --url ws://HOST:PORT/ws --token-file PATH --channel NAME [--channel NAME …]
                               --until-seq N [--publish-channel NAME --publish-count M]`;

function print(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function options(): { url: string; tokenFile: string; channels: string[]; untilSeq: number; publishChannel?: string; publishCount: number } {
  const { values } = parseArgs({
    options: {
      url: { type: "string" },
      "token-file": { type: "string" },
      channel: { type: "string", multiple: true },
      "until-seq": { type: "string" },
      "publish-channel": { type: "string" },
      "publish-count": { type: "string", default: "0" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const untilSeq = Number(values["until-seq"]);
  const publishCount = Number(values["publish-count"]);
  if (!values.url || !values["token-file"] || !values.channel?.length || !Number.isInteger(untilSeq) || !Number.isInteger(publishCount)) {
    console.error(USAGE);
    process.exit(2);
  }
  return {
    url: values.url,
    tokenFile: values["token-file"],
    channels: values.channel,
    untilSeq,
    publishChannel: values["publish-channel"],
    publishCount,
  };
}

async function main(): Promise<number> {
  const ns = options();
  if (ns.publishCount > 0 && !ns.publishChannel) {
    print({ fatal: "--publish-count needs --publish-channel" });
    return 2;
  }
  const client = new Client({
    url: ns.url,
    tokenProvider: () => readFileSync(ns.tokenFile, "utf8").trim() || null,
    WebSocket: WebSocket as unknown as WebSocketConstructor,
  });
  const reached = new Set<string>();
  let published = ns.publishCount === 0;
  const complete = (): boolean => published && ns.channels.every((c) => reached.has(c));
  const check = (channel: string, seq: number): void => {
    if (seq >= ns.untilSeq) reached.add(channel);
  };
  const finishIfDone = (): void => {
    if (complete()) void client.close();
  };

  let lastState: string | null = null;
  client.on("*", (event: ClientEvent) => {
    if (["connecting", "connected", "reconnecting", "closed"].includes(event.kind) && event.kind !== lastState) {
      lastState = event.kind;
      print({ state: event.kind });
    }
    switch (event.kind) {
      case "event":
        print({ event: { channel: event.channel, seq: event.seq, id: event.id, type: event.type } });
        check(event.channel, event.seq);
        break;
      case "subscribed":
        print({ recovery: { channel: event.channel, mode: event.mode } });
        if (event.mode === "reset" || event.mode === "none") check(event.channel, event.headSeq);
        break;
      case "snapshot":
        check(event.channel, event.seq);
        break;
      default:
        break;
    }
    if (event.kind !== "closed") finishIfDone();
  });

  for (const channel of ns.channels) await client.subscribe(channel, { lastSeq: 0 });
  client.start();
  const publisher = (async () => {
    for (let index = 0; index < ns.publishCount; index++) {
      try {
        const result = await client.publish(ns.publishChannel!, "conformance.publish", { index });
        print({ published: { index, seq: result.seq } });
      } catch (error) {
        if (error instanceof ClientClosed) return; // the closed event reports why
        throw error;
      }
    }
    published = true;
    finishIfDone();
  })();

  const closed = await client.closed;
  await publisher;
  if (!complete()) {
    print({ fatal: `closed ${closed.code}: ${closed.reason}` });
    return 1;
  }
  print({ done: true });
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    print({ fatal: String(error) });
    process.exitCode = 1;
  },
);
