"""OIDC bearer tokens over HTTPS, checked against a local issuer on loopback (its discovery
document and JWKS served by this test): a valid token is trusted as its user; an expired one,
one for another audience or issuer, one signed by another key and an unsigned one are not;
a key the issuer adds later is fetched when a token names it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers import Daemon, free_port, https_request

pytestmark = [pytest.mark.root]


class Issuer:
    """A minimal OIDC provider: discovery and JWKS over HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body: Any = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    body = {"keys": [issuer.jwk(kid) for kid in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_key(self) -> str:
        kid = uuid.uuid4().hex[:8]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return kid

    def jwk(self, kid: str) -> dict[str, Any]:
        found: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(
            self.keys[kid].public_key(), as_dict=True
        )
        return {**found, "kid": kid, "alg": "RS256", "use": "sig"}

    def token(self, kid: str, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": "stapes", "sub": "u-1", "email": "ada@example.org",
                "iat": now, "exp": now + 300, **claims}  # fmt: skip
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    found.thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


def test_oidc_bearer_tokens(daemon: Daemon, issuer: Issuer) -> None:
    kid = issuer.add_key()
    address = f"127.0.0.1:{free_port()}"
    config = {"core.https_address": address}
    assert daemon.request("PATCH", "/1.0", {"config": config}).status == 200
    try:

        def call(token: str, path: str = "/1.0/instances") -> int:
            conn_headers = {"Authorization": f"Bearer {token}"}
            return https_request(address, "GET", path, headers=conn_headers)[0].status

        valid = issuer.token(kid)
        assert call(valid) == 403  # OIDC is off until the issuer is set
        oidc = {"oidc.issuer": issuer.url, "oidc.client.id": "stapes"}
        assert daemon.request("PATCH", "/1.0", {"config": oidc}).status == 200
        public = https_request(address, "GET", "/1.0")[0].metadata
        assert public["auth"] == "untrusted" and "oidc" in public["auth_methods"]
        assert public["config"]["oidc.issuer"] == issuer.url

        assert call(valid) == 200
        bearer = {"Authorization": f"Bearer {valid}"}
        meta = https_request(address, "GET", "/1.0", headers=bearer)[0].metadata
        assert meta["auth"] == "trusted" and meta["auth_user_method"] == "oidc"
        assert meta["auth_user_name"] == "ada@example.org"

        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for bad in [
            issuer.token(kid, exp=int(time.time()) - 60),  # expired
            issuer.token(kid, aud="someone-else"),
            issuer.token(kid, iss="http://127.0.0.1:1"),
            issuer.token(kid, key=stranger),  # right key id, wrong key
            issuer.token("nosuchkid", key=stranger),
            jwt.encode(
                {"iss": issuer.url, "aud": "stapes", "exp": int(time.time()) + 60, "email": "x"},
                key=None,
                algorithm="none",
            ),
            "not-a-jwt",
        ]:
            assert call(bad) == 401, bad  # as Incus: authentication is needed

        # the 401 tells a client how to log in (the incus client's device flow reads these)
        scopes = {"oidc.scopes": "openid,email,offline_access"}
        assert daemon.request("PATCH", "/1.0", {"config": scopes}).status == 200
        refused = https_request(
            address, "GET", "/1.0/instances", headers={"Authorization": "Bearer not-a-jwt"}
        )[0]
        assert refused.status == 401
        assert refused.headers["X-Incus-OIDC-issuer"] == issuer.url
        assert refused.headers["X-Incus-OIDC-clientid"] == "stapes"
        assert refused.headers["X-Incus-OIDC-scopes"] == "openid,email,offline_access"

        # a key the issuer adds later is fetched when a token names it
        rotated = issuer.add_key()
        assert call(issuer.token(rotated, email="bob@example.org")) == 200
    finally:
        unset = ("core.https_address", "oidc.issuer", "oidc.client.id", "oidc.scopes")
        daemon.request("PATCH", "/1.0", {"config": dict.fromkeys(unset, "")})
