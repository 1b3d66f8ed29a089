"""The JSON Schema keywords the catalog gives each server validator accept exactly what the
validator accepts, on boundary and typical values (so a changed validator cannot drift silently)."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from protocol_spec.catalog import _VALIDATORS
from wsserver import api_types, protocol

CHANNELS = ["room:42", "a", "x" * 255, "x" * 256, "", "with space", "a/b", "glob*", "user@x.y=z+~!$", "ü", "a\n"]
EVENT_TYPES = ["message.new", "a.b.c", "nodot", ".lead", "trail.", "a..b", "a.b\n", "x." + "y" * 126, "x." + "y" * 127, "a b.c"]
IDS = ["", "x", "x" * 128, "x" * 129]


def _accepts(validator, value) -> bool:
    try:
        validator(None, _Attr, value)
    except ValueError:
        return False
    return True


class _Attr:
    name = "value"


@pytest.mark.parametrize(
    ("validator", "values"),
    [
        (protocol._valid_channel, CHANNELS),
        (protocol._valid_event_type, EVENT_TYPES),
        (protocol._check_id, IDS),
        (api_types._valid_id, IDS),
        (protocol._non_negative, [-1, 0, 1, 10**12]),
        (api_types._valid_close_code, list(range(0, 5100))),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_schema_matches_validator(validator, values):
    schema = Draft202012Validator(_VALIDATORS[validator])
    mismatches = [v for v in values if schema.is_valid(v) != _accepts(validator, v)]
    assert mismatches == []


def test_every_mapped_validator_is_tested():
    tested = {
        protocol._valid_channel, protocol._valid_event_type, protocol._check_id,
        api_types._valid_id, protocol._non_negative, api_types._valid_close_code,
    }
    assert set(_VALIDATORS) == tested
