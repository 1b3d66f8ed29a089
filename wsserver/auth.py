"""JWT verification (algorithm allow-list from configuration only, aud/iss, leeway, keys by
`kid` from a JWKS, an injectable wall clock) and the grants a token carries: `channels` /
`publish` glob patterns with `{sub}` (``wsserver.globs``).

Never logs a token: errors name the reason, not the input.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

import jwt
from attrs import frozen
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from wsserver.config import Config
from wsserver.globs import compile_glob, sub_pattern_problem
from wsserver.jwks import KeySet

#: Longest token we try to parse; longer ones are refused before any decoding.
MAX_TOKEN_LENGTH: Final = 16 * 1024
#: Longest `sub` we accept (it ends up in logs, stats and idempotency scopes).
MAX_SUB_LENGTH: Final = 256
#: At most this many patterns per claim (each is compiled to a regex).
MAX_PATTERNS: Final = 256


class AuthError(Exception):
    """The token is not acceptable. ``reason`` is a short metric label, ``str()`` a sentence."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@frozen
class Grants:
    """What a token allows: channels to subscribe to and to publish on."""

    subscribe: tuple[re.Pattern[str], ...]
    publish: tuple[re.Pattern[str], ...]

    @classmethod
    def from_patterns(cls, sub: str, channels: Iterable[str], publish: Iterable[str]) -> Grants:
        """Raises AuthError for a `{sub}` pattern that could reach another user's channels."""
        compiled = []
        for patterns in (channels, publish):
            for pattern in patterns:
                problem = sub_pattern_problem(pattern)
                if problem:
                    raise AuthError("malformed_claim", problem)
            compiled.append(tuple(compile_glob(p, sub) for p in patterns))
        return cls(compiled[0], compiled[1])

    def can_subscribe(self, channel: str) -> bool:
        return any(p.fullmatch(channel) for p in self.subscribe)

    def can_publish(self, channel: str) -> bool:
        return any(p.fullmatch(channel) for p in self.publish)


@frozen
class Claims:
    """The verified parts of a token the server uses. ``expires`` (seconds since the Unix
    epoch) is the token's `exp` plus the configured leeway: the connection's deadline."""

    sub: str
    exp: float
    grants: Grants
    expires: float = 0.0


def _pattern_claim(payload: dict[str, Any], name: str) -> tuple[str, ...]:
    value = payload.get(name, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AuthError("malformed_claim", f"claim `{name}` must be a list of channel patterns")
    if len(value) > MAX_PATTERNS:
        raise AuthError("malformed_claim", f"claim `{name}` has more than {MAX_PATTERNS} patterns")
    return tuple(value)


class TokenVerifier:
    """Verifies client JWTs against the configured key(s).

    One configured key (``jwt_secret`` for HS256, ``jwt_public_key`` for RS256/ES256) verifies
    every token, and a `kid` in the header is then ignored (unless ``jwt_key_id`` pins one).
    With a JWKS (``jwt_jwks``), a token's `kid` selects its key; an unknown `kid` makes the
    JWKS be re-read (at most once a minute, see ``wsserver.jwks``) and is then `auth_failed`.

    Args:
        config: jwt_secret, jwt_public_key, jwt_jwks, jwt_audience, jwt_issuer, jwt_leeway, jwt_key_id.
        wall_clock: seconds since the Unix epoch; tests pass a clock tied to Trio's MockClock.
        keyset: the JWKS keys (built from ``config.jwt_jwks`` when not given).
    """

    def __init__(self, config: Config, wall_clock: Callable[[], float] = time.time, keyset: KeySet | None = None) -> None:
        self._keys: dict[str, Any] = {}
        if config.jwt_secret:
            self._keys["HS256"] = config.jwt_secret.encode()
        if config.jwt_public_key:
            key = load_public_key(config.jwt_public_key)
            self._keys["RS256" if isinstance(key, rsa.RSAPublicKey) else "ES256"] = key
        self.keyset = keyset
        if self.keyset is None and config.jwt_jwks:
            self.keyset = KeySet(config.jwt_jwks)
            if not self.keyset.is_url:
                self.keyset.load_file_now()  # a bad file stops the server at start, with the reason
        if not self._keys and self.keyset is None:
            raise ValueError("no JWT key configured")
        self._audience = config.jwt_audience
        self._issuer = config.jwt_issuer
        self._leeway = config.jwt_leeway
        self._kid = config.jwt_key_id
        self.wall_clock = wall_clock

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self._keys)

    async def authenticate(self, token: str) -> Claims:
        """``verify``, re-reading the JWKS once (rate-limited) when the token names an unknown key."""
        try:
            return self.verify(token)
        except AuthError as exc:
            if exc.reason != "unknown_kid" or self.keyset is None:
                raise
        await self.keyset.refresh()
        return self.verify(token)

    def _key_for(self, header: dict[str, Any]) -> tuple[Any, str]:
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str):
            raise AuthError("algorithm", "token header has no algorithm")
        if self.keyset is not None and (kid is not None or not self._keys):
            if not isinstance(kid, str) or not kid:
                raise AuthError("unknown_kid", "token has no key id (`kid`); the server selects keys by `kid`")
            jwk = self.keyset.get(kid)
            if jwk is None:
                raise AuthError("unknown_kid", "token key id (`kid`) is not a known key")
            if alg != jwk.algorithm_name:
                raise AuthError("algorithm", f"token algorithm {alg[:16]!r} does not match its key's ({jwk.algorithm_name})")
            return jwk, alg
        key = self._keys.get(alg)
        if key is None:
            raise AuthError("algorithm", f"token algorithm {alg[:16]!r} not accepted (accepted: {', '.join(self._keys)})")
        if self._kid is not None and kid != self._kid:
            raise AuthError("unknown_kid", "token key id (`kid`) is not the configured key id")
        return key, alg

    def verify(self, token: str) -> Claims:
        """Returns the token's claims, or raises AuthError with a reason label."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("malformed", "token missing or too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed", "token is not a well-formed JWT") from None
        key, alg = self._key_for(header)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": ["sub", "exp"],
                    "verify_exp": False,  # checked below against the injectable wall clock
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("missing_claim", f"token lacks the required `{exc.claim}` claim") from None
        except jwt.InvalidAudienceError:
            raise AuthError("audience", "token audience (`aud`) does not match") from None
        except jwt.InvalidIssuerError:
            raise AuthError("issuer", "token issuer (`iss`) does not match") from None
        except jwt.InvalidSignatureError:
            raise AuthError("signature", "token signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise AuthError("invalid", f"token rejected: {type(exc).__name__}") from None
        return self._claims(payload)

    def _claims(self, payload: dict[str, Any]) -> Claims:
        sub, exp, nbf = payload.get("sub"), payload.get("exp"), payload.get("nbf")
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_LENGTH:
            raise AuthError("missing_claim", f"claim `sub` must be a non-empty string of at most {MAX_SUB_LENGTH}")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise AuthError("missing_claim", "claim `exp` must be a number")
        now = self.wall_clock()
        if exp + self._leeway <= now:
            raise AuthError("expired", "token has expired")
        if nbf is not None:
            if isinstance(nbf, bool) or not isinstance(nbf, (int, float)):
                raise AuthError("malformed_claim", "claim `nbf` must be a number")
            if nbf - self._leeway > now:
                raise AuthError("not_yet_valid", "token is not valid yet (`nbf`)")
        grants = Grants.from_patterns(sub, _pattern_claim(payload, "channels"), _pattern_claim(payload, "publish"))
        return Claims(sub=sub, exp=float(exp), grants=grants, expires=float(exp) + self._leeway)


def load_public_key(path: str) -> Any:
    """Loads an RSA or EC public key from a PEM file; raises ValueError with a plain message."""
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"jwt_public_key {path}: not a readable PEM public key ({exc})") from None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise ValueError(f"jwt_public_key {path}: only RSA (RS256) and EC P-256 (ES256) keys are supported")
    return key


def mint_token(
    secret: str,
    *,
    sub: str,
    ttl: float,
    channels: Iterable[str] = (),
    publish: Iterable[str] = (),
    now: float | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Signs an HS256 token (used by `wsserver token`, the dev credentials and the tests)."""
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": sub,
        "iat": int(issued),
        "exp": int(issued + ttl),
        "channels": list(channels),
        "publish": list(publish),
    }
    claims.update(extra or {})
    return jwt.encode(claims, secret, algorithm="HS256")
