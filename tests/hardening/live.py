"""A fuzzing client for the live server: sends one hostile message, then a sentinel `ping`, and
collects every frame up to the sentinel's `pong`, so a hung session shows as a timeout."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support import make_token
from wsserver.codes import ErrorCode

#: Seconds the server gets to answer one message and the sentinel behind it.
ANSWER_TIMEOUT = 5.0
#: Pause after an `error rate_limited` before asking for a sentinel again.
RATE_LIMITED_PAUSE = 0.1
ERROR_CODES = frozenset(code.value for code in ErrorCode)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def check_error(frame: dict) -> None:
    """A clear `error`: a contract code, a message, a retryable flag."""
    payload = frame.get("payload")
    assert isinstance(payload, dict), frame
    assert payload.get("code") in ERROR_CODES, frame
    assert isinstance(payload.get("message"), str) and payload["message"], frame
    assert isinstance(payload.get("retryable"), bool), frame


class FuzzClient:
    """One connection at a time; reconnects (and re-authenticates) after a contract close."""

    def __init__(self, url: str, *, authenticate: bool, allowed_closes: frozenset[int]) -> None:
        self.url = url
        self.authenticate = authenticate
        self.allowed_closes = allowed_closes
        self.closes: list[int] = []
        self.errors: dict[str, int] = {}
        self.ws: ClientConnection | None = None
        self._stack = contextlib.ExitStack()

    def _open(self) -> ClientConnection:
        self._stack.close()
        ws = self._stack.enter_context(
            connect(self.url, open_timeout=ANSWER_TIMEOUT, close_timeout=1, max_size=None, compression=None)
        )
        if self.authenticate:
            token = make_token("fuzzer", channels=["fuzz.*"], publish=["fuzz.pub"])
            ws.send(json.dumps({"type": "auth", "id": str(uuid.uuid4()), "timestamp": 0, "payload": {"token": token}}))
            answer = json.loads(ws.recv(timeout=ANSWER_TIMEOUT))
            assert answer["type"] == "auth_ok", answer
        return ws

    def exchange(self, message: str | bytes) -> list[dict]:
        """Sends ``message`` and a sentinel ping; returns the frames received before the pong."""
        if self.ws is None:
            self.ws = self._open()
        sentinels: set[str] = set()
        received: list[dict] = []
        try:
            self.ws.send(message)
            self._send_sentinel(sentinels)
            while True:
                frame = json.loads(self.ws.recv(timeout=ANSWER_TIMEOUT))
                assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
                if frame["type"] == "pong" and frame.get("ref") in sentinels:
                    return received
                if frame["type"] == "error":
                    check_error(frame)
                    code = frame["payload"]["code"]
                    self.errors[code] = self.errors.get(code, 0) + 1
                    if code == "rate_limited":  # the limiter may have dropped the sentinel: ask again
                        time.sleep(RATE_LIMITED_PAUSE)
                        self._send_sentinel(sentinels)
                received.append(frame)
        except TimeoutError:
            raise AssertionError(f"no answer within {ANSWER_TIMEOUT}s to {message[:300]!r} (got {received})") from None
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            assert code in self.allowed_closes, f"closed with {code} ({closed}) after {message[:200]!r}"
            self.closes.append(code)
            self.ws = None
            return received

    def _send_sentinel(self, sentinels: set[str]) -> None:
        sentinel = str(uuid.uuid4())
        sentinels.add(sentinel)
        self.ws.send(json.dumps({"type": "ping", "id": sentinel, "timestamp": 0, "payload": {}}))

    def close(self) -> None:
        self.ws = None
        self._stack.close()
