"""MandateAuth on httpx2 (the MCP SDK's client) and httpx, sync and async."""

from __future__ import annotations

import asyncio

import httpx
import httpx2
import pytest
from conftest import verify_with_jwk

from mandate_client import DpopKey, MandateAuth, StaticToken, token_hash

TOKEN = "header.claims.signature"


@pytest.mark.parametrize("lib", [httpx2, httpx], ids=["httpx2", "httpx"])
def test_every_request_gets_the_token_and_its_own_proof_for_its_method_and_url(lib) -> None:
    key = DpopKey.generate()
    seen = []

    def handle(request):
        seen.append(request)
        return lib.Response(200, json={})

    auth = MandateAuth(TOKEN, key)
    assert isinstance(auth, lib.Auth)
    with lib.Client(transport=lib.MockTransport(handle), auth=auth) as client:
        client.post("http://127.0.0.1:8180/mcp/everything?x=1", json={"jsonrpc": "2.0"})
        client.post("http://127.0.0.1:8180/mcp/everything", json={"jsonrpc": "2.0"})
        client.get("http://127.0.0.1:8180/mcp/everything")
        client.delete("http://127.0.0.1:8180/mcp/everything")
    jtis = set()
    for request, method in zip(seen, ["POST", "POST", "GET", "DELETE"], strict=True):
        assert request.headers["Authorization"] == f"DPoP {TOKEN}"
        _, claims = verify_with_jwk(request.headers["DPoP"])
        assert claims["htm"] == method
        assert claims["htu"] == "http://127.0.0.1:8180/mcp/everything"
        assert claims["ath"] == token_hash(TOKEN)
        jtis.add(claims["jti"])
    assert len(jtis) == 4


@pytest.mark.parametrize("lib", [httpx2, httpx], ids=["httpx2", "httpx"])
def test_the_async_flow_signs_too(lib) -> None:
    key = DpopKey.generate()
    seen = []

    async def handle(request):
        seen.append(request)
        return lib.Response(200, json={})

    async def run() -> None:
        async with lib.AsyncClient(transport=lib.MockTransport(handle), auth=MandateAuth(TOKEN, key)) as client:
            await client.post("http://127.0.0.1:8180/mcp/everything", content=b"{}")

    asyncio.run(run())
    _, claims = verify_with_jwk(seen[0].headers["DPoP"])
    assert seen[0].headers["Authorization"] == f"DPoP {TOKEN}"
    assert claims["htm"] == "POST" and claims["ath"] == token_hash(TOKEN)


def test_a_requested_nonce_is_sent_once_more_with_a_new_proof() -> None:
    key = DpopKey.generate()
    seen = []

    def handle(request):
        # The retry is the same request object, re-signed: keep what was sent.
        seen.append(dict(request.headers))
        if len(seen) == 1:
            return httpx2.Response(
                401,
                headers={"WWW-Authenticate": 'DPoP error="use_dpop_nonce"', "DPoP-Nonce": "n-42"},
            )
        return httpx2.Response(200, json={"ok": True})

    with httpx2.Client(transport=httpx2.MockTransport(handle), auth=MandateAuth(TOKEN, key)) as client:
        response = client.post("http://127.0.0.1:8180/mcp/everything", content=b"{}")
    assert response.status_code == 200
    assert len(seen) == 2
    first = verify_with_jwk(seen[0]["dpop"])[1]
    second = verify_with_jwk(seen[1]["dpop"])[1]
    assert "nonce" not in first and second["nonce"] == "n-42"
    assert first["jti"] != second["jti"]


def test_a_plain_401_is_not_retried() -> None:
    seen = []

    def handle(request):
        seen.append(request)
        return httpx2.Response(401, headers={"WWW-Authenticate": 'DPoP error="invalid_token"'})

    with httpx2.Client(transport=httpx2.MockTransport(handle), auth=MandateAuth(TOKEN, DpopKey.generate())) as c:
        assert c.get("http://127.0.0.1:8180/mcp/everything").status_code == 401
    assert len(seen) == 1


def test_a_token_source_is_asked_for_each_request() -> None:
    class Rotating:
        def __init__(self) -> None:
            self.n = 0

        def token(self) -> str:
            self.n += 1
            return f"token-{self.n}"

        async def atoken(self) -> str:
            return self.token()

    seen = []

    def handle(request):
        seen.append(request)
        return httpx2.Response(204)

    with httpx2.Client(transport=httpx2.MockTransport(handle), auth=MandateAuth(Rotating(), DpopKey.generate())) as c:
        c.get("http://127.0.0.1/a")
        c.get("http://127.0.0.1/a")
    assert [r.headers["Authorization"] for r in seen] == ["DPoP token-1", "DPoP token-2"]
    assert verify_with_jwk(seen[1].headers["DPoP"])[1]["ath"] == token_hash("token-2")


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError):
        StaticToken("  \n")
    assert "token" not in repr(StaticToken("secret-token")).replace("StaticToken", "")
