"""Channel patterns: `*` globs (the only wildcard; it matches dots too) and the `{sub}`
placeholder, with the encoding of a token's `sub` into channel-name characters.

How a sub appears in a channel name (CONTRACT §4, and the generated protocol docs):
every character of the sub that is a letter, a digit or one of ``_ - : @ = + ! $`` stands for
itself; every other byte of its UTF-8 form (``.``, ``~``, ``|``, ``*``, ``/``, spaces, non-ASCII…)
is written ``~XX`` with two upper-case hex digits. So ``alice`` → ``alice``, ``auth0|abc`` →
``auth0~7Cabc``, ``bob.smith`` → ``bob~2Esmith``, ``ann@example.com`` → ``ann@example~2Ecom``.
The encoding is one-to-one and never contains a dot.

Why a pattern with `{sub}` is refused unless the sub's place is pinned: `*` may match any run of
characters, so in ``inbox.{sub}.*`` a plain sub ``bob`` would also match the channels of
``bob.smith``. With the encoding above (no dot) and the placement rule of
``sub_pattern_problem``, the channel name alone determines the sub, so **no channel is granted
to two distinct subs by one pattern**; ``tests/wsserver/test_globs.py`` proves it with Hypothesis.
"""

from __future__ import annotations

import re
import string
from typing import Final

SUB: Final = "{sub}"
#: Sub characters that stand for themselves in a channel name (the channel charset without `.` and `~`).
_PLAIN: Final = frozenset(string.ascii_letters + string.digits + "_-:@=+!$")


def encode_sub(sub: str) -> str:
    """The form a token's `sub` takes inside a channel name (see the module docstring)."""
    if all(c in _PLAIN for c in sub):
        return sub
    out = []
    for char in sub:
        if char in _PLAIN:
            out.append(char)
        else:
            out.extend(f"~{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def sub_pattern_problem(pattern: str) -> str | None:
    """Why a pattern containing `{sub}` could grant one channel to two distinct subs (None: it
    cannot, or it has no `{sub}`).

    A pattern is accepted when the sub's place in a channel name is pinned from one end:
    * no `*` before the first `{sub}`, and after it either no `*` at all or a literal `.`
      before the next `*` (``inbox.{sub}``, ``inbox.{sub}.*``, ``{sub}``, ``room-{sub}``); or
    * no `*` after the last `{sub}`, and before it either no `*` at all or a literal `.`
      after the previous `*` (``*.{sub}``, ``*.inbox.{sub}``).
    Refused, e.g.: ``*.{sub}.*`` (a channel naming two users matches both), ``{sub}*``,
    ``*{sub}`` (``b`` and ``ab`` would share channels).
    """
    if SUB not in pattern:
        return None
    first = pattern.index(SUB)
    last = pattern.rindex(SUB)
    before_first, after_first = pattern[:first], pattern[first + len(SUB):]
    before_last, after_last = pattern[:last], pattern[last + len(SUB):]
    if "*" not in before_first:
        run = after_first.split("*", 1)
        if len(run) == 1 or "." in run[0].replace(SUB, ""):
            return None
    if "*" not in after_last:
        run = before_last.rsplit("*", 1)
        if len(run) == 1 or "." in run[-1].replace(SUB, ""):
            return None
    return (
        f"pattern {pattern!r}: `{{sub}}` must be pinned from one end so that no channel matches for two users "
        "(e.g. `inbox.{sub}.*` or `*.{sub}`; not `*.{sub}.*`, `{sub}*` or `*{sub}`)"
    )


def compile_glob(pattern: str, sub: str | None = None) -> re.Pattern[str]:
    """Compiles a channel pattern: `*` matches any run of characters (dots included) and is the
    only wildcard; `{sub}` stands for ``encode_sub(sub)`` taken literally. Callers check
    ``sub_pattern_problem`` first where `{sub}` is allowed."""
    parts = []
    for literal in pattern.split("*"):
        if sub is not None and SUB in literal:
            encoded = re.escape(encode_sub(sub))
            parts.append(encoded.join(re.escape(piece) for piece in literal.split(SUB)))
        else:
            parts.append(re.escape(literal))
    return re.compile(".*".join(parts), re.DOTALL)
