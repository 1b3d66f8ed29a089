"""Hypothesis strategies for hostile client frames: arbitrary JSON values, near-valid envelopes
that mix real frame types and field names with wrong types, and valid frames of every type."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from wsserver.protocol import CLIENT_FRAMES

FIELD_NAMES = ("type", "id", "timestamp", "payload", "channel", "token", "lastSeq", "epoch", "event", "data", "ref")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: beyond 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)

frame_types = st.sampled_from(sorted(CLIENT_FRAMES)) | st.sampled_from(("message.new", "pong", "auth_ok", "", "AUTH")) | st.text(max_size=20)
uuids = st.uuids(version=4).map(str)
channels = st.from_regex(r"[A-Za-z0-9_\-.:@=+~!$]{1,40}", fullmatch=True)


@st.composite
def near_valid_frames(draw) -> dict:
    """An envelope whose every field may be right, missing or of a wrong type."""
    frame: dict = {}
    if draw(st.booleans()):
        frame["type"] = draw(frame_types | json_values)
    if draw(st.booleans()):
        frame["id"] = draw(uuids | json_values)
    if draw(st.booleans()):
        frame["timestamp"] = draw(st.integers(min_value=0, max_value=2**53) | json_values)
    if draw(st.booleans()):
        payload = draw(st.dictionaries(st.sampled_from(FIELD_NAMES), json_values | channels, max_size=4) | json_values)
        frame["payload"] = payload
    frame.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    return frame


@st.composite
def valid_frames(draw) -> dict:
    """A frame the decoder must accept (the token need not verify: decoding does not check it)."""
    kind = draw(st.sampled_from(sorted(CLIENT_FRAMES)))
    payload: dict = {
        "auth": lambda: {"token": draw(st.text(min_size=1, max_size=40))},
        "subscribe": lambda: {"channel": draw(channels), **({"lastSeq": draw(st.integers(0, 2**53))} if draw(st.booleans()) else {})},
        "unsubscribe": lambda: {"channel": draw(channels)},
        "publish": lambda: {"channel": draw(channels), "event": draw(st.from_regex(r"[a-z]{1,8}\.[a-z]{1,8}", fullmatch=True)),
                            "data": draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))},
        "ping": lambda: {},
    }[kind]()
    return {"type": kind, "id": draw(uuids),
            "timestamp": draw(st.integers(0, 2**53)), "payload": payload}


def dumps(value: object) -> str:
    """JSON text as a hostile client would send it (big integers included)."""
    return json.dumps(value)
