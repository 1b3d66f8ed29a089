"""A real `wss://` client for TLS and binary tests: trustme certificates, and the websockets sync
client doing auth → subscribe → receive, every step bounded by a timeout."""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trustme
from websockets.sync.client import ClientConnection, connect

#: Seconds any single step (handshake, one frame) may take.
STEP_TIMEOUT = 10.0


class ServerCert:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost, written as PEM files."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        issued = self.ca.issue_cert("127.0.0.1", "localhost")
        self.cert = directory / "server-cert.pem"
        self.key = directory / "server-key.pem"
        self.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(self.key)

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(ctx)
        return ctx


def frame(type_: str, **payload: Any) -> str:
    return json.dumps({"type": type_, "id": str(uuid.uuid4()), "timestamp": int(time.time() * 1000), "payload": payload})


def receive(ws: ClientConnection, timeout: float = STEP_TIMEOUT) -> dict:
    return json.loads(ws.recv(timeout=timeout))


@contextmanager
def subscribed(url: str, token: str, channel: str, ssl_context: ssl.SSLContext | None, *,
               last_seq: int | None = None, epoch: str | None = None) -> Iterator[ClientConnection]:
    """Connects, authenticates and subscribes (live only, or replaying after ``last_seq``);
    yields the open connection, positioned before the first replayed or live event."""
    with connect(url, ssl=ssl_context, open_timeout=STEP_TIMEOUT, close_timeout=STEP_TIMEOUT) as ws:
        ws.send(frame("auth", token=token))
        answer = receive(ws)
        assert answer["type"] == "auth_ok", answer
        position = {} if last_seq is None else {"lastSeq": last_seq, **({"epoch": epoch} if epoch else {})}
        ws.send(frame("subscribe", channel=channel, **position))
        answer = receive(ws)
        assert answer["type"] == "subscribed", answer
        assert answer["payload"]["channel"] == channel
        assert answer["payload"]["recovery"] == ("none" if last_seq is None else "replay"), answer
        yield ws
