"""`{sub}` in channel patterns (CONTRACT §4): one pattern never grants a channel to two distinct
subs, subs from common identity providers work, and the encoding is as documented.

The property test is exact, not a sampling of channels: an instantiated pattern is a glob whose
only wildcard is `*`, and whether two globs share a string is decided by a small search over
pairs of positions (``globs_intersect``)."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wsserver.harness import make_token
from wsserver.auth import AuthError, Grants
from wsserver.globs import SUB, compile_glob, encode_sub, sub_pattern_problem
from wsserver.protocol import check_channel_name


def globs_intersect(a: str, b: str) -> bool:
    """Whether some string matches both globs (`*` = any run of characters, all else literal)."""

    @functools.cache
    def go(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":
            if go(i + 1, j) or (j < len(b) and b[j] != "*" and go(i, j + 1)):
                return True
        if j < len(b) and b[j] == "*":
            if go(i, j + 1) or (i < len(a) and a[i] != "*" and go(i + 1, j)):
                return True
        if i < len(a) and j < len(b) and a[i] != "*" and b[j] != "*" and a[i] == b[j]:
            return go(i + 1, j + 1)
        return False

    return go(0, 0)


def instantiate(pattern: str, sub: str) -> str:
    return pattern.replace(SUB, encode_sub(sub))


def test_glob_intersection_oracle_agrees_with_the_matcher():
    assert globs_intersect("inbox.bob.*", "inbox.bob.smith.*")  # the reported case, unencoded
    assert not globs_intersect("inbox.bob.*", "inbox.bob~2Esmith.*")
    assert globs_intersect("*a", "b*") and not globs_intersect("*a", "*b")
    assert compile_glob("inbox.{sub}.*", "bob").fullmatch("inbox.bob.smith.private")


def test_reported_case_bob_cannot_read_bob_smiths_channels():
    bob = Grants.from_patterns("bob", ["inbox.{sub}.*"], [])
    bob_smith = Grants.from_patterns("bob.smith", ["inbox.{sub}.*"], [])
    theirs = "inbox." + encode_sub("bob.smith") + ".private"
    assert bob_smith.can_subscribe(theirs) and not bob.can_subscribe(theirs)
    assert not bob_smith.can_subscribe("inbox.bob.smith.private")  # the dot of a sub is never a dot
    assert bob.can_subscribe("inbox.bob.smith.private")  # bob's own sub-channel `smith.private`


@pytest.mark.parametrize(
    "sub, encoded",
    [
        ("alice", "alice"),
        ("auth0|abc123", "auth0~7Cabc123"),
        ("ann@example.com", "ann@example~2Ecom"),
        ("0b7e2f3c-1d4a-4c59-9e0e-8a3b7f6d2c11", "0b7e2f3c-1d4a-4c59-9e0e-8a3b7f6d2c11"),
        ("google-oauth2|1057", "google-oauth2~7C1057"),
        ("a~b", "a~7Eb"),
        ("*", "~2A"),
        ("é", "~C3~A9"),
        ("a b/c", "a~20b~2Fc"),
    ],
)
def test_subs_of_common_identity_providers_are_usable_in_channel_names(sub, encoded):
    assert encode_sub(sub) == encoded
    channel = f"inbox.{encoded}"
    assert check_channel_name(channel) is None  # a valid channel name
    assert Grants.from_patterns(sub, ["inbox.{sub}"], []).can_subscribe(channel)


@pytest.mark.parametrize(
    "pattern, ok",
    [
        ("user.{sub}", True),
        ("inbox.{sub}.*", True),
        ("{sub}", True),
        ("{sub}.*", True),
        ("*.{sub}", True),
        ("*.inbox.{sub}", True),
        ("dm.{sub}-*.x", False),  # `-` is no separator: `a-b-x` is sub `a` with `*`=`b`, and sub `a-b`
        ("dm.{sub}.*.{sub}", True),
        ("room-{sub}", True),
        ("chat.*", True),  # no {sub}: nothing to pin
        ("*.{sub}.*", False),
        ("{sub}*", False),
        ("*{sub}", False),
        ("a.{sub}*", False),
        ("*.{sub}-x.*", False),
    ],
)
def test_placement_rule(pattern, ok):
    assert (sub_pattern_problem(pattern) is None) is ok


def test_a_token_with_an_ambiguous_pattern_is_refused_with_the_reason():
    with pytest.raises(AuthError) as err:
        Grants.from_patterns("bob", ["*.{sub}.*"], [])
    assert err.value.reason == "malformed_claim" and "pinned" in str(err.value)


_SUB_CHARS = st.sampled_from(list("ab.*|@~-_é"))
_subs = st.text(_SUB_CHARS, min_size=1, max_size=6)
_pattern_pieces = st.sampled_from(["a", "b", ".", "*", SUB, "-", "~", "2E", "@"])
_patterns = st.lists(_pattern_pieces, min_size=1, max_size=8).map("".join).filter(lambda p: SUB in p)


@settings(max_examples=3000, deadline=None)
@given(pattern=_patterns, s1=_subs, s2=_subs)
def test_no_accepted_pattern_grants_one_channel_to_two_subs(pattern, s1, s2):
    if s1 == s2 or sub_pattern_problem(pattern) is not None:
        return
    assert not globs_intersect(instantiate(pattern, s1), instantiate(pattern, s2)), (pattern, s1, s2)


@settings(max_examples=500, deadline=None)
@given(s1=_subs, s2=_subs)
def test_encoding_is_one_to_one_and_dot_free(s1, s2):
    assert "." not in encode_sub(s1) and "*" not in encode_sub(s1)
    assert (encode_sub(s1) == encode_sub(s2)) == (s1 == s2)


async def test_over_a_real_connection_each_user_reaches_only_its_own_inbox(server):
    """The reported reproduction: sub `bob` with `inbox.{sub}.*` subscribed to
    `inbox.bob.smith.private`, the channel of sub `bob.smith`; and `auth0|…` subs never matched."""
    bob_smith = await server.connect("bob.smith", channels=["inbox.{sub}.*"])
    theirs = "inbox.bob~2Esmith.private"
    assert (await bob_smith.subscribe(theirs))["payload"]["recovery"] == "none"
    bob = await server.connect("bob", channels=["inbox.{sub}.*"])
    ref = await bob.send("subscribe", {"channel": theirs})
    assert (await bob.expect("error", ref=ref))["payload"]["code"] == "forbidden"
    idp = await server.connect("auth0|abc123", channels=["inbox.{sub}"])
    await idp.subscribe("inbox.auth0~7Cabc123")
    ambiguous = await server.connect("eve", auth=False)
    ref = await ambiguous.send("auth", {"token": make_token("eve", channels=["*.{sub}.*"])})
    error = await ambiguous.expect("error", ref=ref)
    assert error["payload"]["code"] == "auth_failed" and "pinned" in error["payload"]["message"]
    for client in (bob_smith, bob, idp):
        await client.aclose()
