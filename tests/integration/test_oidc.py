"""OIDC bearer tokens over HTTPS, checked against a local issuer on loopback (its discovery
document and JWKS served by this test): a valid token is trusted as its user; an expired one,
one for another audience or issuer, one signed by another key and an unsigned one are not;
a key the issuer adds later is fetched when a token names it."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.parse
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
    """A minimal OIDC provider on 127.0.0.1: discovery and JWKS, and for browsers the
    authorization code flow with PKCE (every login is consented at once, as ada)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.codes: dict[str, dict[str, str]] = {}
        """Authorization codes handed out, with the login's parameters."""
        self.refresh_tokens: set[str] = set()
        self.access_seconds = 300
        self.refreshed = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/.well-known/openid-configuration":
                    body: Any = {
                        "issuer": issuer.url,
                        "jwks_uri": f"{issuer.url}/jwks",
                        "authorization_endpoint": f"{issuer.url}/authorize",
                        "token_endpoint": f"{issuer.url}/token",
                    }
                elif url.path == "/jwks":
                    body = {"keys": [issuer.jwk(kid) for kid in issuer.keys]}
                elif url.path == "/authorize":
                    params = dict(urllib.parse.parse_qsl(url.query))
                    code = uuid.uuid4().hex
                    issuer.codes[code] = params
                    back = urllib.parse.urlencode({"code": code, "state": params["state"]})
                    self.send_response(302)
                    self.send_header("Location", f"{params['redirect_uri']}?{back}")
                    self.end_headers()
                    return
                else:
                    self.send_error(404)
                    return
                self.answer(200, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if self.path != "/token":
                    self.send_error(404)
                    return
                if form.get("grant_type") == "authorization_code":
                    login = issuer.codes.pop(form.get("code", ""), None)
                    verifier = form.get("code_verifier", "").encode()
                    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest())
                    if (
                        login is None
                        or login["redirect_uri"] != form.get("redirect_uri")
                        or login["code_challenge"] != challenge.rstrip(b"=").decode()
                        or login["client_id"] != form.get("client_id")
                    ):
                        self.answer(400, {"error": "invalid_grant"})
                        return
                elif form.get("grant_type") == "refresh_token":
                    if form.get("refresh_token") not in issuer.refresh_tokens:
                        self.answer(400, {"error": "invalid_grant"})
                        return
                    issuer.refreshed += 1
                else:
                    self.answer(400, {"error": "unsupported_grant_type"})
                    return
                refresh = uuid.uuid4().hex
                issuer.refresh_tokens.add(refresh)
                kid = next(iter(issuer.keys))
                access = issuer.token(kid, exp=int(time.time()) + issuer.access_seconds)
                self.answer(200, {"access_token": access, "refresh_token": refresh})

            def answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
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
