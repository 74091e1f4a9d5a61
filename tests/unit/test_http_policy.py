from __future__ import annotations

from stapes.server.http_policy import HttpPolicy


def test_trusted_proxies_name_the_client() -> None:
    policy = HttpPolicy.from_config({"core.https_trusted_proxy": "127.0.0.1,::1"})
    assert policy.client_address("127.0.0.1:4242", "203.0.113.9, 10.0.0.1") == "203.0.113.9"
    assert policy.client_address("[::1]:4242", "2001:db8::1") == "2001:db8::1"
    assert policy.client_address("192.0.2.1:4242", "203.0.113.9") == "192.0.2.1:4242"
    assert policy.client_address("127.0.0.1:4242", "not-an-ip") == "127.0.0.1:4242"
    assert policy.client_address("127.0.0.1:4242", "") == "127.0.0.1:4242"
