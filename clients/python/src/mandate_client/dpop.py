"""DPoP proofs (RFC 9449) made with an agent's key.

A Mandate task token is bound to the key of the agent it was issued to (its
``cnf.jkt`` is the RFC 7638 thumbprint of that key). Every request presenting
the token carries a fresh proof: a JWT signed with that key, naming the
request's method and URL and the SHA-256 of the token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = ["DpopKey", "b64url", "htu_of", "token_hash"]

#: The curves DPoP proofs can be made with, by name: (JWS alg, JWK crv, coordinate size, hash).
_EC_CURVES: dict[str, tuple[str, str, int, hashes.HashAlgorithm]] = {
    "secp256r1": ("ES256", "P-256", 32, hashes.SHA256()),
    "secp384r1": ("ES384", "P-384", 48, hashes.SHA384()),
}


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def token_hash(access_token: str) -> str:
    """The ``ath`` claim for ``access_token``: base64url(SHA-256(token))."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def htu_of(url: str) -> str:
    """The ``htu`` claim for ``url``: the URL without its query and fragment."""
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode("utf-8")


class DpopKey:
    """An agent's private key, making DPoP proofs.

    ECDSA P-256 (ES256, what ``mandate agent create`` writes as ``svid.key``),
    P-384 (ES384) and Ed25519 (EdDSA) keys are supported.
    """

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            curve = _EC_CURVES.get(private_key.curve.name)
            if curve is None:
                raise ValueError(f"EC curve {private_key.curve.name} is not supported (P-256, P-384)")
            self.alg, crv, size, _ = curve
            numbers = private_key.public_key().public_numbers()
            self._jwk = {
                "kty": "EC",
                "crv": crv,
                "x": b64url(numbers.x.to_bytes(size, "big")),
                "y": b64url(numbers.y.to_bytes(size, "big")),
            }
        elif isinstance(private_key, ed25519.Ed25519PrivateKey):
            self.alg = "EdDSA"
            raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self._jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
        else:
            raise ValueError(f"{type(private_key).__name__} keys are not supported (EC P-256/P-384, Ed25519)")
        self._key = private_key

    @classmethod
    def from_pem(cls, pem: str | bytes | os.PathLike[str], password: bytes | None = None) -> DpopKey:
        """Loads a PEM private key (PKCS#8 ``PRIVATE KEY``, or SEC1 ``EC PRIVATE KEY``).

        ``pem`` is the PEM text itself (``str`` or ``bytes`` holding
        ``-----BEGIN``) or the path of a file holding it.
        """
        if isinstance(pem, bytes) and b"-----BEGIN" in pem:
            data = pem
        elif isinstance(pem, str) and "-----BEGIN" in pem:
            data = pem.encode("ascii")
        else:
            with open(os.fspath(pem), "rb") as f:
                data = f.read()
        key = serialization.load_pem_private_key(data, password=password)
        if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
            raise ValueError(f"{type(key).__name__} keys are not supported (EC P-256/P-384, Ed25519)")
        return cls(key)

    @classmethod
    def generate(cls) -> DpopKey:
        """A new P-256 key (for tests and throwaway clients)."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK with its required members only."""
        return dict(self._jwk)

    def thumbprint(self) -> str:
        """RFC 7638 JWK SHA-256 thumbprint: what a token bound to this key has as ``cnf.jkt``."""
        members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[self._jwk["kty"]]
        canonical = {m: self._jwk[m] for m in members}
        return b64url(hashlib.sha256(_json(canonical)).digest())

    def _sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(data)
        _, _, size, digest = _EC_CURVES[self._key.curve.name]
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(digest)))
        # JWS wants R || S, each left-padded to the curve size (RFC 7518 §3.4), not DER.
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def sign_jwt(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """A compact JWS of ``claims`` under ``header`` (whose ``alg`` is set here)."""
        header = {**header, "alg": self.alg}
        signing_input = f"{b64url(_json(header))}.{b64url(_json(claims))}".encode("ascii")
        return f"{signing_input.decode('ascii')}.{b64url(self._sign(signing_input))}"

    def proof(
        self,
        method: str,
        url: str,
        access_token: str | None = None,
        *,
        nonce: str | None = None,
        iat: int | None = None,
    ) -> str:
        """A fresh DPoP proof for ``method url``.

        With ``access_token``, the proof carries its hash (``ath``), as a proof
        presented with a token must. ``nonce`` is a server-provided
        ``DPoP-Nonce``, if the server asked for one. Each call makes a new
        ``jti``: a proof is good for one request only.
        """
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method.upper(),
            "htu": htu_of(url),
            "iat": int(time.time()) if iat is None else iat,
        }
        if access_token is not None:
            claims["ath"] = token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        return self.sign_jwt({"typ": "dpop+jwt", "jwk": self.public_jwk}, claims)
