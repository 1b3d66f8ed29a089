"""An embedded log written by the first wave (schema 0: WITHOUT ROWID events and idempotency
records) opens as schema 1 with everything in it: events, seqs, epochs, publish ids, snapshots."""

from __future__ import annotations

import sqlite3

import trio

from tests.store.contract import DEFAULT_RETENTION, request
from wsserver.protocol import encode_event
from wsserver.store.sqlite import SCHEMA_VERSION, SqliteStore

SCHEMA_V0 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE channels (name TEXT PRIMARY KEY, generation INTEGER NOT NULL DEFAULT 0,
    head_seq INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE events (channel TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL,
    ts INTEGER NOT NULL, frame BLOB NOT NULL, PRIMARY KEY (channel, seq)) WITHOUT ROWID;
CREATE TABLE idempotency (scope TEXT NOT NULL, key TEXT NOT NULL, channel TEXT NOT NULL, seq INTEGER NOT NULL,
    epoch TEXT NOT NULL, event_id TEXT NOT NULL, ts INTEGER NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID;
CREATE INDEX idempotency_by_channel ON idempotency (channel, ts);
CREATE TABLE snapshots (channel TEXT PRIMARY KEY, seq INTEGER NOT NULL, generation INTEGER NOT NULL,
    state BLOB NOT NULL, ts INTEGER NOT NULL) WITHOUT ROWID;
"""


def write_v0(path) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript(SCHEMA_V0)
    con.execute("INSERT INTO meta VALUES ('nonce', 'c0ffee00')")
    con.execute("INSERT INTO channels VALUES ('old.c', 0, 3)")
    for seq in (1, 2, 3):
        frame = encode_event(event_type="a.b", event_id=f"ev{seq}", timestamp=1000 + seq, channel="old.c", seq=seq,
                             epoch="c0ffee00-0", data_json=b'{"n":%d}' % seq)
        con.execute("INSERT INTO events VALUES ('old.c', ?, ?, 'a.b', ?, ?)", (seq, f"ev{seq}", 1000 + seq, frame))
    con.execute("INSERT INTO idempotency VALUES ('api', 'k2', 'old.c', 2, 'c0ffee00-0', 'ev2', 2000000000000)")
    con.execute("INSERT INTO snapshots VALUES ('old.c', 2, 0, '{\"s\":1}', 1)")
    con.close()


async def test_a_first_wave_log_is_migrated_with_everything_in_it(tmp_path):
    path = tmp_path / "events.sqlite3"
    write_v0(path)
    store = SqliteStore(path, retention=lambda c: DEFAULT_RETENTION, on_commit=lambda evs: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        pos = await store.position("old.c")
        assert (pos.head_seq, pos.oldest_seq, pos.epoch) == (3, 1, "c0ffee00-0")
        events = await store.read_after("old.c", 0, 10)
        assert [(e.seq, e.id) for e in events] == [(1, "ev1"), (2, "ev2"), (3, "ev3")]
        again = await store.append(request("old.c", idem="k2"))  # the publish id survived
        assert again.duplicate and (again.seq, again.event_id) == (2, "ev2")
        fresh = await store.append(request("old.c"))
        assert (fresh.seq, fresh.epoch) == (4, "c0ffee00-0")
        snap = await store.get_snapshot("old.c")
        assert snap is not None and snap.seq == 2
        nursery.cancel_scope.cancel()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {name: sql for name, sql in con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")}
    assert "WITHOUT ROWID" not in tables["events"] and "events_v0" not in tables
    con.close()
