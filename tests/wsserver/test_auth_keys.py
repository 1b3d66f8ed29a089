"""Token keys (CONTRACT §4 "Keys"): a `kid` is ignored with one configured key; with a JWKS
(file or URL) the `kid` selects the key, an unknown one re-reads the JWKS at most once a minute;
and the leeway is honoured by the connection's deadline, not only at verification."""

from __future__ import annotations

import http.server
import json
import threading
import time

import jwt
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.wsserver.harness import WAIT, Client, make_token, start_server
from wsserver.auth import AuthError, TokenVerifier
from wsserver.config import Config, ConfigError, load_config
from wsserver.jwks import REFRESH_MIN_INTERVAL, KeySet


def rsa_key(kid: str):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True) | {"kid": kid, "use": "sig", "alg": "RS256"}
    return private, jwk


def signed(private, kid: str | None, sub: str = "idp-user", alg: str = "RS256", ttl: float = 600, **claims) -> str:
    headers = {"kid": kid} if kid is not None else {}
    body = {"sub": sub, "exp": int(time.time() + ttl), "channels": ["*"], "publish": ["*"], **claims}
    return jwt.encode(body, private, algorithm=alg, headers=headers)


class JwksServer:
    """A real HTTP server on loopback serving a JWKS document the test can rotate; counts fetches."""

    def __init__(self, keys: list[dict]) -> None:
        self.keys = keys
        self.fetches = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server():
    with JwksServer([]) as server:
        yield server


async def test_a_kid_is_ignored_when_one_key_is_configured(server):
    """Every identity provider sends a `kid`; with one configured secret it must not lock them out."""
    client = await Client.open(server.nursery, server.url)
    token = jwt.encode({"sub": "u", "exp": int(time.time() + 60)}, server.config.jwt_secret, algorithm="HS256",
                       headers={"kid": "2024-rotation-7"})
    ok = await client.auth(token)
    assert ok["payload"]["userId"] == "u"
    await client.aclose()


async def test_jwks_url_selects_the_key_by_kid_over_a_real_connection(nursery, tmp_path, jwks_server):
    k1, jwk1 = rsa_key("k1")
    k2, jwk2 = rsa_key("k2")
    jwks_server.keys = [jwk1, jwk2]
    srv = await start_server(nursery, tmp_path, jwt_jwks=jwks_server.url)
    client = await Client.open(nursery, srv.url)
    assert (await client.auth(signed(k2, "k2", sub="auth0|abc")))["payload"]["userId"] == "auth0|abc"
    # a token signed by k1 but naming k2 is a bad signature; an unknown kid is auth_failed + 4001
    bad = await Client.open(nursery, srv.url)
    ref = await bad.send("auth", {"token": signed(k1, "k2")})
    assert (await bad.expect("error", ref=ref))["payload"]["code"] == "auth_failed"
    assert await bad.closed() == 4001
    unknown = await Client.open(nursery, srv.url)
    ref = await unknown.send("auth", {"token": signed(k1, "nope")})
    assert (await unknown.expect("error", ref=ref))["payload"]["code"] == "auth_failed"
    assert await unknown.closed() == 4001
    # the server's own HS256 secret still works beside the JWKS (no kid → the configured key)
    hs = await Client.open(nursery, srv.url)
    await hs.auth(make_token("plain"))
    await client.aclose()
    await hs.aclose()


async def test_jwks_rotation_is_picked_up_on_an_unknown_kid_at_most_once_a_minute(jwks_server):
    k1, jwk1 = rsa_key("k1")
    k2, jwk2 = rsa_key("k2")
    jwks_server.keys = [jwk1]
    now = [1000.0]
    keyset = KeySet(jwks_server.url, clock=lambda: now[0])
    verifier = TokenVerifier(Config(api_key="k" * 8), keyset=keyset)
    await keyset.refresh(force=True)
    assert jwks_server.fetches == 1
    assert (await verifier.authenticate(signed(k1, "k1"))).sub == "idp-user"
    # the provider rotates to k2; a token with k2 arrives 10 s after the last read: not re-read yet
    jwks_server.keys = [jwk2]
    now[0] += 10
    with pytest.raises(AuthError) as err:
        await verifier.authenticate(signed(k2, "k2"))
    assert err.value.reason == "unknown_kid" and jwks_server.fetches == 1
    # a minute later the same token makes the server re-read the JWKS once, and is accepted
    now[0] += REFRESH_MIN_INTERVAL
    assert (await verifier.authenticate(signed(k2, "k2"))).sub == "idp-user"
    assert jwks_server.fetches == 2
    # a flood of forged kids costs at most one read a minute
    for i in range(50):
        with pytest.raises(AuthError):
            await verifier.authenticate(signed(k1, f"forged-{i}"))
    assert jwks_server.fetches == 2
    # k1 is gone from the set: its tokens are refused now
    with pytest.raises(AuthError):
        await verifier.authenticate(signed(k1, "k1"))


async def test_concurrent_unknown_kids_share_one_fetch(jwks_server):
    k1, jwk1 = rsa_key("k1")
    jwks_server.keys = [jwk1]
    keyset = KeySet(jwks_server.url)
    verifier = TokenVerifier(Config(api_key="k" * 8), keyset=keyset)
    results = []

    async def one() -> None:
        results.append((await verifier.authenticate(signed(k1, "k1"))).sub)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)
    assert results == ["idp-user"] * 20 and jwks_server.fetches == 1


def test_jwks_file_es256_and_refusals(tmp_path):
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True) | {"kid": "e1"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk, {"kty": "oct", "kid": "s", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}))
    verifier = TokenVerifier(Config(api_key="k" * 8, jwt_jwks=str(path)))
    assert verifier.keyset is not None and verifier.keyset.kids == ("e1",)  # the symmetric key is refused
    assert verifier.verify(signed(private, "e1", alg="ES256")).sub == "idp-user"
    with pytest.raises(AuthError) as err:
        verifier.verify(signed(private, None, alg="ES256"))
    assert err.value.reason == "unknown_kid"  # keys by id only: a token must name its key
    forged = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", algorithm="HS256", headers={"kid": "s"})
    with pytest.raises(AuthError):
        verifier.verify(forged)
    path.write_text("{not json")
    with pytest.raises(Exception, match="not JSON"):
        TokenVerifier(Config(api_key="k" * 8, jwt_jwks=str(path)))


def test_jwks_setting_is_checked_up_front(tmp_path):
    env = {"WSSERVER_JWT_JWKS": "http://idp.example.com/jwks.json"}
    with pytest.raises(ConfigError, match="jwt_jwks.*https"):
        load_config(environ=env)
    with pytest.raises(ConfigError, match="jwt_jwks.*not found"):
        load_config(environ={"WSSERVER_JWT_JWKS": str(tmp_path / "missing.json")})
    assert load_config(environ={"WSSERVER_JWT_JWKS": "https://idp.example.com/jwks.json"}).jwt_jwks


async def test_a_token_accepted_within_the_leeway_is_held_to_exp_plus_leeway(nursery, tmp_path):
    srv = await start_server(nursery, tmp_path, jwt_leeway=5.0, token_expiring_lead=0.5)
    exp = int(time.time()) - 1  # already past exp, inside the 5 s leeway: the deadline is >= 3 s away
    client = await Client.open(nursery, srv.url)
    ok = await client.auth(make_token("late", ttl=0, now=exp))
    assert ok["payload"]["expiresAt"] == (exp + 5) * 1000  # the deadline the connection is held to
    await trio.sleep(0.3)
    ref = await client.send("ping")
    await client.expect("pong", ref=ref)  # still open: no 4002 before exp + leeway
    warning = await client.expect("token_expiring", timeout=WAIT)
    assert warning["payload"]["expiresAt"] == (exp + 5) * 1000
    assert (await client.expect("error"))["payload"]["code"] == "token_expired"
    assert await client.closed() == 4002
    assert time.time() >= exp + 5 - 0.05
