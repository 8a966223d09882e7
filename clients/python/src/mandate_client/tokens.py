"""Task tokens: a fixed one, or one obtained (and renewed) from Mandate's token endpoint."""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .dpop import DpopKey

__all__ = [
    "TOKEN_EXCHANGE",
    "StaticToken",
    "TaskTokenSource",
    "TokenError",
    "TokenSource",
    "http_module",
]

#: RFC 8693 token exchange, the grant Mandate issues task tokens for.
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def http_module() -> Any:
    """The HTTP client library in use: ``httpx2`` (the MCP SDK's), else ``httpx``."""
    try:
        import httpx2

        return httpx2
    except ImportError:
        try:
            import httpx

            return httpx
        except ImportError:
            raise ImportError("mandate_client needs httpx2 (pip install httpx2) or httpx") from None


@runtime_checkable
class TokenSource(Protocol):
    """Anything that hands out the current task token."""

    def token(self) -> str: ...

    async def atoken(self) -> str: ...


class StaticToken:
    """A task token obtained elsewhere (``mandate token request``, another process)."""

    def __init__(self, access_token: str) -> None:
        access_token = access_token.strip()
        if not access_token:
            raise ValueError("the task token is empty")
        self._token = access_token

    def token(self) -> str:
        return self._token

    async def atoken(self) -> str:
        return self._token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


class TokenError(Exception):
    """The token endpoint refused: its RFC 6749 ``error`` and ``error_description``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"token request refused ({status} {error}): {description}")
        self.status = status
        self.error = error
        self.description = description


class TaskTokenSource:
    """Obtains a task token for the agent whose SVID is in ``svid_dir`` and
    renews it before it expires.

    The agent authenticates with its X.509-SVID over mTLS (``svid.pem``,
    ``svid.key``, trusting ``bundle.pem``: the files ``mandate agent create
    --out DIR`` writes) at ``token_url`` (``https://mandate:8443/oauth/token``),
    and binds the token to ``key`` (by default its SVID key) with a DPoP
    proof. ``authorization_details`` is the ``agent_task`` entry (or the list
    holding it): purpose, tools, data domains, capabilities, ttl.

    A renewed token is a new task with the same details, asked for once the
    current one has less than ``refresh_margin`` seconds left (or half its
    life, if that is shorter). What policy granted is in :attr:`answer`.
    """

    def __init__(
        self,
        svid_dir: str | os.PathLike[str],
        token_url: str,
        authorization_details: dict[str, Any] | list[dict[str, Any]] | str,
        refresh_margin: float = 30,
        *,
        key: DpopKey | None = None,
        timeout: float = 30.0,
    ) -> None:
        directory = Path(svid_dir)
        self.cert_file = directory / "svid.pem"
        self.key_file = directory / "svid.key"
        self.bundle_file = directory / "bundle.pem"
        for path in (self.cert_file, self.key_file, self.bundle_file):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing (made by `mandate agent create --out {directory}`)")
        if isinstance(authorization_details, str):
            authorization_details = json.loads(authorization_details)
        if isinstance(authorization_details, dict):
            authorization_details = [authorization_details]
        self.authorization_details: list[dict[str, Any]] = authorization_details
        self.token_url = token_url
        self.refresh_margin = refresh_margin
        self.key = key if key is not None else DpopKey.from_pem(self.key_file)
        self.timeout = timeout
        #: The token endpoint's last answer (``access_token`` left out).
        self.answer: dict[str, Any] | None = None
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()
        self._alock: Any = None

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the node's bundle and presents the agent's SVID."""
        context = ssl.create_default_context(cafile=str(self.bundle_file))
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    @property
    def task_id(self) -> str | None:
        """The task of the current token."""
        return None if self.answer is None else self.answer.get("task_id")

    def _fresh(self) -> str | None:
        if self._token is not None and time.monotonic() < self._renew_at:
            return self._token
        return None

    def _request(self) -> tuple[dict[str, str], dict[str, str]]:
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "authorization_details": json.dumps(self.authorization_details),
        }
        headers = {"DPoP": self.key.proof("POST", self.token_url)}
        return form, headers

    def _accept(self, status: int, body: bytes, asked_at: float) -> str:
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status != 200 or not isinstance(answer, dict) or "access_token" not in answer:
            if isinstance(answer, dict):
                raise TokenError(status, str(answer.get("error")), str(answer.get("error_description")))
            raise TokenError(status, "unexpected_answer", body[:200].decode("utf-8", "replace"))
        token = str(answer.pop("access_token"))
        lifetime = float(answer.get("expires_in", 0))
        self._renew_at = asked_at + lifetime - min(self.refresh_margin, lifetime / 2)
        self._token = token
        self.answer = answer
        return token

    def token(self) -> str:
        """The current task token, asking for a new one when it is about to expire."""
        with self._lock:
            fresh = self._fresh()
            if fresh is not None:
                return fresh
            form, headers = self._request()
            asked_at = time.monotonic()
            with http_module().Client(verify=self.ssl_context(), timeout=self.timeout) as client:
                response = client.post(self.token_url, data=form, headers=headers)
            return self._accept(response.status_code, response.content, asked_at)

    async def atoken(self) -> str:
        """:meth:`token` for async clients."""
        import anyio

        if self._alock is None:
            self._alock = anyio.Lock()
        async with self._alock:
            fresh = self._fresh()
            if fresh is not None:
                return fresh
            form, headers = self._request()
            asked_at = time.monotonic()
            async with http_module().AsyncClient(verify=self.ssl_context(), timeout=self.timeout) as client:
                response = await client.post(self.token_url, data=form, headers=headers)
            return self._accept(response.status_code, response.content, asked_at)

    def __repr__(self) -> str:
        return f"TaskTokenSource({self.token_url!r}, task_id={self.task_id!r})"
