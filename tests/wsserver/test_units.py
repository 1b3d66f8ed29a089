"""Socket-free tests of the pure parts: recovery arithmetic, globs, config loading, frame decoding."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsserver.auth import AuthError, Grants, TokenVerifier
from wsserver.globs import compile_glob
from wsserver.config import ChannelRetention, Config, ConfigError, Retention, load_config, parse_duration
from wsserver.protocol import (
    DecodeError,
    PublishFrame,
    SubscribeFrame,
    decode_client_frame,
    encode_event,
)
from wsserver.recovery import merge_buffer, plan, window_allows
from wsserver.framing import text_frame

R = Retention(ttl=3600, max_events=100)
NOW = 10_000_000


@pytest.mark.parametrize(
    "after, head, next_ts, expected",
    [
        (5, 5, None, True),  # at head: nothing to replay, always in window
        (0, 0, None, True),
        (6, 5, None, False),  # beyond head
        (-1, 5, None, False),
        (4, 5, NOW, True),
        (4, 5, None, False),  # event 5 is not stored any more
        (100, 200, NOW, True),  # exactly head - max_events
        (99, 200, NOW, False),  # one below the window
        (4, 5, NOW - 3600 * 1000, False),  # event N+1 exactly ttl old: out
        (4, 5, NOW - 3600 * 1000 + 1, True),
    ],
)
def test_window_allows(after, head, next_ts, expected):
    assert window_allows(after, head, next_ts, NOW, R) is expected


@pytest.mark.parametrize(
    "last_seq, client_epoch, replay_ok, snapshot_ok, expected",
    [
        (None, None, False, False, "none"),
        (None, "other", True, True, "none"),
        (3, None, True, False, "replay"),
        (3, "e1", True, True, "replay"),
        (3, "e0", True, True, "snapshot"),  # epoch differs: never replay
        (3, "e0", True, False, "reset"),
        (3, None, False, True, "snapshot"),
        (3, None, False, False, "reset"),
    ],
)
def test_plan(last_seq, client_epoch, replay_ok, snapshot_ok, expected):
    assert plan(last_seq=last_seq, client_epoch=client_epoch, epoch="e1", replay_ok=replay_ok, snapshot_ok=snapshot_ok) == expected


class Ev:
    def __init__(self, seq):
        self.seq = seq


@pytest.mark.parametrize(
    "buffered, after, expected",
    [
        ([], 5, []),
        ([6, 7], 5, [6, 7]),
        ([7, 6, 6, 5, 4], 5, [6, 7]),  # unordered, duplicates, already delivered
        ([7, 8], 5, None),  # gap: 6 missing
        ([6, 8], 5, None),
        ([3, 4], 5, []),
    ],
)
def test_merge_buffer(buffered, after, expected):
    out = merge_buffer([Ev(s) for s in buffered], after)
    assert (None if out is None else [e.seq for e in out]) == expected


@given(st.lists(st.integers(1, 40)), st.integers(0, 40))
def test_merge_buffer_property(seqs, after):
    out = merge_buffer([Ev(s) for s in seqs], after)
    if out is not None:
        got = [e.seq for e in out]
        assert got == list(range(after + 1, after + 1 + len(got)))
        assert set(got) == {s for s in seqs if s > after}


@pytest.mark.parametrize(
    "pattern, sub, channel, ok",
    [
        ("chat.*", None, "chat.a.b", True),
        ("chat.*", None, "chatx", False),
        ("*", None, "anything", True),
        ("user.{sub}", "u1", "user.u1", True),
        ("user.{sub}", "u1", "user.u2", False),
        ("user.{sub}", "*", "user.bob", False),  # a `*` in sub is literal
        ("user.{sub}", "*", "user.~2A", True),  # ...and is written ~2A in a channel name
        ("a.{sub}.*", "x.y", "a.x~2Ey.z", True),  # a sub's dot is written ~2E (globs.encode_sub)
        ("a.{sub}.*", "x.y", "a.x.y.z", False),  # so sub `x.y` never reaches sub `x`'s channels
        ("room?", None, "room1", False),  # `?` is not a wildcard
        ("[ab]", None, "a", False),
    ],
)
def test_globs(pattern, sub, channel, ok):
    assert bool(compile_glob(pattern, sub).fullmatch(channel)) is ok


def test_grants():
    g = Grants.from_patterns("u", ["chat.*"], ["chat.{sub}"])
    assert g.can_subscribe("chat.x") and not g.can_publish("chat.x") and g.can_publish("chat.u")


def test_verifier_claim_shapes():
    import jwt

    cfg = Config(jwt_secret="s" * 32, api_key="k" * 8)
    v = TokenVerifier(cfg, wall_clock=lambda: 1000.0)
    ok = v.verify(jwt.encode({"sub": "a", "exp": 2000, "channels": "chat.*"}, "s" * 32, algorithm="HS256"))
    assert ok.grants.can_subscribe("chat.1")
    for claims, reason in [
        ({"sub": "a", "exp": 2000, "channels": [1]}, "malformed_claim"),
        ({"sub": "", "exp": 2000}, "missing_claim"),
        ({"sub": "a", "exp": 999}, "expired"),
        ({"sub": "a", "exp": "2000"}, "missing_claim"),
    ]:
        with pytest.raises(AuthError) as exc:
            v.verify(jwt.encode(claims, "s" * 32, algorithm="HS256"))
        assert exc.value.reason in (reason, "invalid"), (claims, exc.value.reason)


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("text, seconds", [("25", 25), ("250ms", 0.25), ("10s", 10), ("5m", 300), ("72h", 259200), ("7d", 604800), (1.5, 1.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5 weeks", "-3", True])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_config_precedence_file_env_flags(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('port = 1111\nheartbeat_interval = "30s"\nallowed_origins = ["https://a"]\n'
                 '[[channels]]\npattern = "chat.*"\nhistory_max_events = 50\n'
                 '[[channels]]\npattern = "*"\nhistory_ttl = "1h"\n')
    cfg = load_config(config_file=f, environ={"WSSERVER_PORT": "2222", "WSSERVER_ALLOW_QUERY_TOKEN": "1"}, flags={"port": "3333"})
    assert cfg.port == 3333 and cfg.heartbeat_interval == 30 and cfg.allow_query_token is True
    assert cfg.allowed_origins == ("https://a",)
    assert cfg.retention_for("chat.x") == Retention(72 * 3600, 50)
    assert cfg.retention_for("other") == Retention(3600, 10_000)
    cfg = load_config(config_file=f, environ={"WSSERVER_PORT": "2222", "WSSERVER_ALLOWED_ORIGINS": "https://x, https://y"})
    assert cfg.port == 2222 and cfg.allowed_origins == ("https://x", "https://y")
    assert load_config(environ={}).port == 8080


@pytest.mark.parametrize(
    "environ, flags, needle",
    [
        ({"WSSERVER_PORT": "eighty"}, {}, "invalid port = 'eighty' (from WSSERVER_PORT)"),
        ({}, {"heartbeat_interval": "soon"}, "invalid heartbeat_interval = 'soon' (from --heartbeat-interval)"),
        ({"WSSERVER_PORT": "70000"}, {}, "invalid port"),
        ({"WSSERVER_ALLOW_QUERY_TOKEN": "maybe"}, {}, "allow_query_token"),
        ({"WSSERVER_JWT_SECRET": "short"}, {}, "jwt_secret"),
        ({"WSSERVER_TLS_CERT": "/nonexistent.pem"}, {}, "tls_key"),
        ({"WSSERVER_JWT_LEEWAY": "120"}, {}, "jwt_leeway"),
        ({"WSSERVER_MAX_MESSAGE_SIZE": "10"}, {}, "max_message_size"),
    ],
)
def test_config_errors_name_the_key(environ, flags, needle):
    with pytest.raises(ConfigError) as exc:
        load_config(environ=environ, flags=flags)
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_config_file_errors(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown configuration key 'prot'"):
        load_config(config_file=f, environ={})
    f.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(config_file=f, environ={})
    f.write_text("[[channels]]\nhistory_ttl = 5\n")
    with pytest.raises(ConfigError, match="pattern"):
        load_config(config_file=f, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(config_file=tmp_path / "missing.toml", environ={})


def test_secret_values_are_not_echoed_in_errors():
    with pytest.raises(ConfigError) as exc:
        load_config(environ={"WSSERVER_API_KEY": "abc"})
    assert "abc" not in str(exc.value)


def test_retention_first_matching_pattern_wins():
    cfg = Config(channels=(ChannelRetention("a.*", history_max_events=1), ChannelRetention("a.b", history_max_events=2)))
    assert cfg.retention_for("a.b").max_events == 1


# ------------------------------------------------------------------ protocol


def test_decode_valid_frames():
    f = decode_client_frame('{"type":"subscribe","id":"x","timestamp":1,"payload":{"channel":"c","lastSeq":4,"epoch":"e"},"extra":1}')
    assert isinstance(f, SubscribeFrame) and f.payload.last_seq == 4 and f.payload.epoch == "e"
    f = decode_client_frame('{"type":"publish","id":"x","timestamp":1,"payload":{"channel":"c","event":"a.b","data":{"k":[1]}}}')
    assert isinstance(f, PublishFrame) and f.payload.data == {"k": [1]}


@pytest.mark.parametrize(
    "text, needle, ref",
    [
        ("nope", "malformed JSON", None),
        ("[]", "JSON object", None),
        ('{"id":"r"}', "type", "r"),
        ('{"type":"x.y","id":"r","timestamp":1,"payload":{}}', "publish", "r"),
        ('{"type":"subscribe","id":"r","timestamp":"1","payload":{"channel":"c"}}', "timestamp", "r"),
        ('{"type":"subscribe","id":"r","timestamp":1,"payload":{}}', "payload.channel: required field missing", "r"),
        ('{"type":"subscribe","id":"r","timestamp":1,"payload":{"channel":"c","lastSeq":true}}', "lastSeq", "r"),
        ('{"type":"subscribe","id":"r","timestamp":1,"payload":{"channel":"' + "c" * 300 + '"}}', "channel", "r"),
        ('{"type":"auth","id":"r","timestamp":1,"payload":{"token":5}}', "payload.token", "r"),
    ],
)
def test_decode_errors(text, needle, ref):
    err = decode_client_frame(text)
    assert isinstance(err, DecodeError) and needle in err.message and err.ref == ref


@given(st.binary(max_size=200))
def test_decoder_never_raises_on_arbitrary_bytes(data):
    decode_client_frame(data)


def test_text_frame_lengths():
    for n, header in [(0, b"\x81\x00"), (125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"), (65535, b"\x81\x7e\xff\xff"),
                      (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00")]:
        assert text_frame(b"a" * n)[: len(header)] == header


def test_event_encoding_is_wire_form():
    import json

    raw = encode_event(event_type="a.b", event_id="i", timestamp=5, channel="c", seq=2, epoch="e", data_json=b'{"x":1}')
    assert json.loads(raw) == {"type": "a.b", "id": "i", "timestamp": 5, "channel": "c", "seq": 2, "epoch": "e", "payload": {"x": 1}}


def test_wall_clock_default_is_real_time():
    cfg = Config(jwt_secret="s" * 32, api_key="k" * 8)
    assert abs(TokenVerifier(cfg).wall_clock() - time.time()) < 1
