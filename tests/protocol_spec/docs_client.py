"""A minimal protocol client written only from the published JSON Schemas (docs/schema/), as a
client developer who never saw the server's code would: it must not import ``wsserver``.

Every frame it builds is checked against the schema of its `type` before it is sent, and every
frame it receives against the union of server frames; a mismatch raises ``SchemaMismatch``.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from websockets.sync.client import ClientConnection, connect


class SchemaMismatch(AssertionError):
    """A frame does not fit the published schema."""


class Schemas:
    """The published schemas: per client frame type, and the server union."""

    def __init__(self, schema_dir: Path) -> None:
        self.client: dict[str, Draft202012Validator] = {}
        self.client_required: dict[str, list[str]] = {}
        for path in sorted((schema_dir / "client").glob("*.json")):
            schema = json.loads(path.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            frame_type = schema["properties"]["type"]["const"]
            self.client[frame_type] = Draft202012Validator(schema)
            self.client_required[frame_type] = schema["required"]
        server = json.loads((schema_dir / "server.json").read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(server)
        self.server = Draft202012Validator(server)

    def build(self, frame_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A client frame of ``frame_type`` with a fresh UUID v4 id and the current time."""
        if frame_type not in self.client:
            raise SchemaMismatch(f"the schemas define no client frame {frame_type!r}")
        frame = {"type": frame_type, "id": str(uuid.uuid4()), "timestamp": int(time.time() * 1000), "payload": payload}
        missing = [name for name in self.client_required[frame_type] if name not in frame]
        if missing:
            raise SchemaMismatch(f"{frame_type}: the schema requires {missing}")
        self.check_client(frame)
        return frame

    def check_client(self, frame: dict[str, Any]) -> None:
        try:
            self.client[frame["type"]].validate(frame)
        except ValidationError as exc:
            raise SchemaMismatch(f"client frame {frame}: {exc.message}") from exc

    def check_server(self, frame: dict[str, Any]) -> None:
        try:
            self.server.validate(frame)
        except ValidationError as exc:
            raise SchemaMismatch(f"server frame {frame}: {exc.message}") from exc


class DocsClient:
    """One connection: send built frames, receive validated frames, within an absolute deadline."""

    def __init__(
        self, ws: ClientConnection, schemas: Schemas, deadline: float, token_source: Callable[[], str]
    ) -> None:
        self.ws = ws
        self.schemas = schemas
        self.deadline = deadline
        self.token_source = token_source
        self.received: list[dict[str, Any]] = []
        self.expiring: list[dict[str, Any]] = []  # token_expiring frames seen
        self.refreshed: list[dict[str, Any]] = []  # auth_ok answers to our refreshes
        self._refresh_ids: set[str] = set()
        self._backlog: deque[dict[str, Any]] = deque()

    @classmethod
    @contextlib.contextmanager
    def open(
        cls, url: str, schemas: Schemas, deadline: float, token_source: Callable[[], str]
    ) -> Iterator[DocsClient]:
        """Connects to ``url``; the connection is closed when the block ends."""
        with connect(url, open_timeout=max(0.1, deadline - time.monotonic())) as ws:
            yield cls(ws, schemas, deadline, token_source)

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("test deadline passed")
        return left

    def send(self, frame_type: str, **payload: Any) -> dict[str, Any]:
        frame = self.schemas.build(frame_type, payload)
        self.ws.send(json.dumps(frame))
        return frame

    def _read(self) -> dict[str, Any] | None:
        """One frame from the socket; token refresh frames are handled here and return None."""
        frame = json.loads(self.ws.recv(timeout=self._left()))
        self.schemas.check_server(frame)
        self.received.append(frame)
        if frame["type"] == "token_expiring":
            # The documented refresh: a new `auth` on the open connection before expiresAt.
            self.expiring.append(frame)
            self._refresh_ids.add(self.send("auth", token=self.token_source())["id"])
            return None
        if frame["type"] == "auth_ok" and frame.get("ref") in self._refresh_ids:
            self.refreshed.append(frame)
            return None
        return frame

    def recv(self) -> dict[str, Any]:
        """The next frame for the application (refresh traffic is handled on the way)."""
        while not self._backlog:
            frame = self._read()
            if frame is not None:
                return frame
        return self._backlog.popleft()

    def pump_until(self, done: Callable[[], bool]) -> None:
        """Reads frames (keeping them for ``recv``) until ``done()``."""
        while not done():
            frame = self._read()
            if frame is not None:
                self._backlog.append(frame)

    def expect(self, frame_type: str, ref: str | None = None) -> dict[str, Any]:
        """The next frame, which must be ``frame_type`` (answering ``ref`` when given)."""
        frame = self.recv()
        if frame["type"] == "error":
            raise AssertionError(f"expected {frame_type}, got error {frame['payload']}")
        assert frame["type"] == frame_type, frame
        if ref is not None:
            assert frame.get("ref") == ref, frame
        return frame
