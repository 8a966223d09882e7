"""Client side of Mandate for Python agents: DPoP proofs, task tokens, and an
HTTP ``Auth`` for the MCP SDK's Streamable HTTP client.

    from mandate_client import DpopKey, MandateAuth, TaskTokenSource
"""

from .auth import MandateAuth
from .dpop import DpopKey, htu_of, token_hash
from .tokens import TOKEN_EXCHANGE, StaticToken, TaskTokenSource, TokenError, TokenSource

__all__ = [
    "TOKEN_EXCHANGE",
    "DpopKey",
    "MandateAuth",
    "StaticToken",
    "TaskTokenSource",
    "TokenError",
    "TokenSource",
    "htu_of",
    "token_hash",
]

__version__ = "0.1.0"
