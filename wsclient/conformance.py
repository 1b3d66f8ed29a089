"""`wsclient-conformance`: the SDK conformance client of CONTRACT §7, built only on the public
API of ``wsclient``; prints one JSON object per line for a black-box harness to check."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import trio

import wsclient


def _print(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsclient-conformance", description=__doc__)
    parser.add_argument("--url", required=True, help="ws://HOST:PORT/ws")
    parser.add_argument("--token-file", required=True, type=Path, help="read whenever a token is needed")
    parser.add_argument("--channel", action="append", required=True, help="subscribe from lastSeq 0 (repeatable)")
    parser.add_argument("--until-seq", type=int, required=True, help="done once every channel delivered this seq")
    parser.add_argument("--publish-channel", help="channel for --publish-count publishes")
    parser.add_argument("--publish-count", type=int, default=0, help="publishes, one after another")
    return parser


_STATES = {
    wsclient.Connecting: "connecting",
    wsclient.Connected: "connected",
    wsclient.Reconnecting: "reconnecting",
    wsclient.Closed: "closed",
}


async def run(ns: argparse.Namespace) -> int:
    def token(_reason: wsclient.TokenReason) -> str | None:
        text = ns.token_file.read_text().strip()
        return text or None

    if ns.publish_count and not ns.publish_channel:
        _print({"fatal": "--publish-count needs --publish-channel"})
        return 2
    reached: set[str] = set()
    published = trio.Event()
    client = wsclient.Client(ns.url, token)

    def check(channel: str, seq: int) -> None:
        if seq >= ns.until_seq:
            reached.add(channel)

    async def publisher() -> None:
        for index in range(ns.publish_count):
            try:
                result = await client.publish(ns.publish_channel, "conformance.publish", {"index": index})
            except wsclient.ClientClosed:
                return  # the event loop reports why
            _print({"published": {"index": index, "seq": result.seq}})
        published.set()
        await finish_if_done()

    async def finish_if_done() -> None:
        if published.is_set() and reached >= set(ns.channel):
            await client.close()

    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        for channel in ns.channel:
            await client.subscribe(channel, last_seq=0)
        nursery.start_soon(publisher)
        last_state = None
        async for event in client.events:
            name = _STATES.get(type(event))
            if name is not None and name != last_state:
                last_state = name
                _print({"state": name})
            match event:
                case wsclient.ChannelEvent():
                    _print({"event": {"channel": event.channel, "seq": event.seq, "id": event.id, "type": event.type}})
                    check(event.channel, event.seq)
                case wsclient.Subscribed():
                    _print({"recovery": {"channel": event.channel, "mode": event.mode}})
                    if event.mode in ("reset", "none"):
                        check(event.channel, event.head_seq)
                case wsclient.Snapshot():
                    check(event.channel, event.seq)
                case wsclient.Closed():
                    if not (published.is_set() and reached >= set(ns.channel)):
                        _print({"fatal": f"closed {event.code}: {event.reason}"})
                        nursery.cancel_scope.cancel()
                        return 1
            if not isinstance(event, wsclient.Closed):
                await finish_if_done()
        if not (published.is_set() and reached >= set(ns.channel)):
            _print({"fatal": "the client stopped before the run was complete"})
            return 1
        _print({"done": True})
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return trio.run(run, ns)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
