"""``MandateAuth``: an httpx2 / httpx ``Auth`` presenting a task token with a fresh DPoP proof."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

from .dpop import DpopKey
from .tokens import StaticToken, TokenSource

__all__ = ["MandateAuth"]


def _auth_bases() -> tuple[type, ...]:
    """``httpx2.Auth`` (the MCP SDK 2.x's client) and ``httpx.Auth``, whichever are installed."""
    bases: list[type] = []
    try:
        import httpx2

        bases.append(httpx2.Auth)
    except ImportError:
        pass
    try:
        import httpx

        bases.append(httpx.Auth)
    except ImportError:
        pass
    if not bases:
        raise ImportError("mandate_client needs httpx2 (pip install httpx2) or httpx")
    return tuple(bases)


class MandateAuth(*_auth_bases()):  # type: ignore[misc]
    """Sets ``Authorization: DPoP <task token>`` and a fresh ``DPoP`` proof on every request.

    ``token`` is a task token (a string), or a source handing out the current
    one (:class:`~mandate_client.TaskTokenSource`). ``key`` is the key the
    token is bound to: the agent's SVID key (:meth:`DpopKey.from_pem`). The
    proof names the request's method and URL, so each request, and each retry,
    gets its own.

    If the server answers 401 asking for a DPoP nonce (RFC 9449 §9), the
    request is sent once more with a proof carrying it.

    An instance of both ``httpx2.Auth`` and ``httpx.Auth`` (when installed),
    so it plugs into either library's clients.
    """

    def __init__(self, token: str | TokenSource, key: DpopKey) -> None:
        self.source: TokenSource = StaticToken(token) if isinstance(token, str) else token
        self.key = key
        self._nonce: str | None = None

    def _sign(self, request: Any, token: str) -> None:
        request.headers["Authorization"] = f"DPoP {token}"
        request.headers["DPoP"] = self.key.proof(request.method, str(request.url), token, nonce=self._nonce)

    def _wants_nonce(self, response: Any) -> bool:
        nonce = response.headers.get("DPoP-Nonce")
        if response.status_code not in (400, 401) or not nonce or nonce == self._nonce:
            return False
        challenge = response.headers.get("WWW-Authenticate", "")
        if "use_dpop_nonce" not in challenge:
            return False
        self._nonce = nonce
        return True

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        token = self.source.token()
        self._sign(request, token)
        response = yield request
        if self._wants_nonce(response):
            self._sign(request, token)
            yield request

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        token = await self.source.atoken()
        self._sign(request, token)
        response = yield request
        if self._wants_nonce(response):
            self._sign(request, token)
            yield request

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:  # pragma: no cover
        # Both flows above are overridden; this one is for callers driving
        # auth_flow by hand (no I/O may happen here, so a fixed token only).
        token = self.source.token()
        self._sign(request, token)
        yield request
