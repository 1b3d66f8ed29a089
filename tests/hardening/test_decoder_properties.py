"""Property tests of `decode_client_frame` on hostile input: arbitrary bytes, text, JSON values
and near-valid envelopes never raise; the answer is a client frame or a clear `DecodeError`."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hardening.strategies import dumps, json_values, near_valid_frames, valid_frames
from wsserver.codes import ErrorCode
from wsserver.protocol import CLIENT_FRAMES, MAX_ID_LENGTH, DecodeError, Envelope, decode_client_frame

#: An error message names what is wrong; it never reflects an unbounded amount of the input.
MAX_MESSAGE_CHARS = 2000
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_answer(answer: object) -> None:
    if isinstance(answer, DecodeError):
        assert answer.code is ErrorCode.BAD_REQUEST
        assert isinstance(answer.message, str) and 0 < len(answer.message) <= MAX_MESSAGE_CHARS, answer.message
        assert answer.ref is None or (isinstance(answer.ref, str) and 0 < len(answer.ref) <= MAX_ID_LENGTH)
    else:
        assert isinstance(answer, Envelope) and type(answer) in CLIENT_FRAMES.values(), answer
        assert CLIENT_FRAMES[answer.TYPE] is type(answer)
        assert isinstance(answer.id, str) and 0 < len(answer.id) <= MAX_ID_LENGTH
        assert type(answer.timestamp) is int


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes(data: bytes):
    check_answer(decode_client_frame(data))


@FUZZ
@given(st.text(max_size=512))
def test_arbitrary_text(text: str):
    check_answer(decode_client_frame(text))


@FUZZ
@given(json_values)
def test_arbitrary_json_values(value: object):
    check_answer(decode_client_frame(dumps(value)))


@FUZZ
@given(near_valid_frames())
def test_near_valid_envelopes(frame: dict):
    answer = decode_client_frame(dumps(frame))
    check_answer(answer)
    if isinstance(answer, DecodeError) and isinstance(frame.get("id"), str) and 0 < len(frame["id"]) <= MAX_ID_LENGTH:
        assert answer.ref == frame["id"]  # the client can tell which frame was refused


@FUZZ
@given(valid_frames())
def test_valid_frames_are_accepted(frame: dict):
    answer = decode_client_frame(json.dumps(frame))
    assert not isinstance(answer, DecodeError), (frame, answer)
    assert answer.TYPE == frame["type"] and answer.id == frame["id"]


@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", "{\"a\":"]))
@settings(max_examples=30, deadline=None)
def test_deep_nesting_is_refused_not_a_crash(depth: int, opener: str):
    check_answer(decode_client_frame(opener * depth))


def test_huge_numbers_and_odd_encodings():
    for text in ('{"type":"ping","id":"a","timestamp":' + "9" * 5000 + "}",
                 '{"type":"ping","id":"a","timestamp":1e999}',
                 '\ufeff{"type":"ping","id":"a","timestamp":1}',
                 '{"type":"ping","id":"a","timestamp":1,"type":"auth"}',
                 '{"type":"ping","id":"\\ud800","timestamp":1}',
                 b'{"type":"ping","id":"\xff","timestamp":1}'):
        check_answer(decode_client_frame(text))
