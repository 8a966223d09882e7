"""Helpers: decoding and verifying proofs independently of the code under test."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url_decode(text: str) -> bytes:
    assert "=" not in text, "base64url in JWS has no padding"
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_jws(jws: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signing input, signature) of a compact JWS."""
    parts = jws.split(".")
    assert len(parts) == 3, jws
    header = json.loads(b64url_decode(parts[0]))
    claims = json.loads(b64url_decode(parts[1]))
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2])


def verify_with_jwk(jws: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verifies a DPoP proof's signature with the key in its own ``jwk`` header
    (as a resource server does), returning (header, claims). Raises on a bad signature."""
    header, claims, signing_input, signature = decode_jws(jws)
    jwk = header["jwk"]
    if jwk["kty"] == "EC":
        curve, size, digest = {
            "P-256": (ec.SECP256R1(), 32, hashes.SHA256()),
            "P-384": (ec.SECP384R1(), 48, hashes.SHA384()),
        }[jwk["crv"]]
        assert header["alg"] == {"P-256": "ES256", "P-384": "ES384"}[jwk["crv"]]
        assert len(signature) == 2 * size, f"JWS ECDSA signatures are R||S ({2 * size} bytes), got {len(signature)}"
        public = ec.EllipticCurvePublicNumbers(
            int.from_bytes(b64url_decode(jwk["x"]), "big"),
            int.from_bytes(b64url_decode(jwk["y"]), "big"),
            curve,
        ).public_key()
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        public.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(digest))
    elif jwk["kty"] == "OKP":
        assert header["alg"] == "EdDSA"
        ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"])).verify(signature, signing_input)
    else:
        raise AssertionError(f"unexpected jwk {jwk}")
    return header, claims


@pytest.fixture
def p256_pem() -> bytes:
    """A PKCS#8 P-256 private key, the form `mandate agent create` writes as svid.key."""
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
