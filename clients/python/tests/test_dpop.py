"""DPoP proof format (RFC 9449 §4.2), checked with independent decoding and verification."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

import pytest
from conftest import b64url_decode, decode_jws, verify_with_jwk
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mandate_client import DpopKey, htu_of, token_hash


def test_a_p256_proof_has_the_rfc_9449_header_and_a_valid_es256_signature(p256_pem: bytes) -> None:
    key = DpopKey.from_pem(p256_pem)
    proof = key.proof("post", "https://mandate.example:8443/mcp/everything")
    header, claims = verify_with_jwk(proof)
    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == "ES256"
    assert set(header) == {"typ", "alg", "jwk"}
    # Public members only: no "d", no "kid", "use" or "alg" inside the JWK.
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}
    assert header["jwk"]["kty"] == "EC" and header["jwk"]["crv"] == "P-256"
    assert len(b64url_decode(header["jwk"]["x"])) == 32 and len(b64url_decode(header["jwk"]["y"])) == 32
    # The JWK is the key's own public key.
    public = serialization.load_pem_private_key(p256_pem, None).public_key().public_numbers()
    assert int.from_bytes(b64url_decode(header["jwk"]["x"]), "big") == public.x
    assert int.from_bytes(b64url_decode(header["jwk"]["y"]), "big") == public.y
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://mandate.example:8443/mcp/everything"
    assert abs(claims["iat"] - time.time()) < 5 and isinstance(claims["iat"], int)
    assert uuid.UUID(claims["jti"]).version == 4
    assert "ath" not in claims and "nonce" not in claims


def test_the_signature_covers_header_and_claims(p256_pem: bytes) -> None:
    proof = DpopKey.from_pem(p256_pem).proof("GET", "http://127.0.0.1:8180/mcp/x")
    head, body, sig = proof.split(".")
    claims = json.loads(b64url_decode(body))
    claims["htm"] = "POST"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidSignature):
        verify_with_jwk(f"{head}.{forged_body}.{sig}")


def test_ath_is_the_base64url_sha256_of_the_token() -> None:
    # The example of RFC 9449 §7.1.
    assert token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU") == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    key = DpopKey.generate()
    token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"
    _, claims = verify_with_jwk(key.proof("POST", "http://127.0.0.1/mcp/e", token))
    expected = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
    assert claims["ath"] == expected


def test_htu_drops_query_and_fragment_and_keeps_the_rest() -> None:
    key = DpopKey.generate()
    _, claims, _, _ = decode_jws(key.proof("GET", "http://127.0.0.1:8180/mcp/everything?session=1#frag"))
    assert claims["htu"] == "http://127.0.0.1:8180/mcp/everything"
    assert htu_of("https://Host.example") == "https://Host.example/"
    for bad in ["/mcp/everything", "ftp://host/x", "mcp/everything"]:
        with pytest.raises(ValueError):
            htu_of(bad)


def test_every_proof_has_its_own_jti() -> None:
    key = DpopKey.generate()
    jtis = {decode_jws(key.proof("POST", "http://127.0.0.1/x", "t"))[1]["jti"] for _ in range(200)}
    assert len(jtis) == 200


def test_a_nonce_and_a_fixed_iat_are_carried() -> None:
    key = DpopKey.generate()
    _, claims = verify_with_jwk(key.proof("POST", "http://127.0.0.1/x", nonce="n-1", iat=1_700_000_000))
    assert claims["nonce"] == "n-1" and claims["iat"] == 1_700_000_000


def test_keys_load_from_a_path_bytes_or_text_in_pkcs8_or_sec1(tmp_path, p256_pem: bytes) -> None:
    path = tmp_path / "svid.key"
    path.write_bytes(p256_pem)
    by_path = DpopKey.from_pem(path)
    assert DpopKey.from_pem(str(path)).public_jwk == by_path.public_jwk
    assert DpopKey.from_pem(p256_pem.decode()).public_jwk == by_path.public_jwk
    sec1 = serialization.load_pem_private_key(p256_pem, None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert b"EC PRIVATE KEY" in sec1
    assert DpopKey.from_pem(sec1).public_jwk == by_path.public_jwk
    with pytest.raises(FileNotFoundError):
        DpopKey.from_pem(tmp_path / "missing.key")


def test_p384_signs_es384_and_ed25519_signs_eddsa() -> None:
    p384 = DpopKey(ec.generate_private_key(ec.SECP384R1()))
    header, _ = verify_with_jwk(p384.proof("POST", "http://127.0.0.1/x"))
    assert header["alg"] == "ES384" and header["jwk"]["crv"] == "P-384"
    ed = DpopKey(ed25519.Ed25519PrivateKey.generate())
    pem = ed._key.private_bytes(  # noqa: SLF001 - round trip through PEM
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    header, _ = verify_with_jwk(DpopKey.from_pem(pem).proof("POST", "http://127.0.0.1/x"))
    assert header["alg"] == "EdDSA"
    assert set(header["jwk"]) == {"kty", "crv", "x"} and header["jwk"]["crv"] == "Ed25519"


def test_unsupported_keys_are_refused() -> None:
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="not supported"):
        DpopKey.from_pem(rsa_pem)
    with pytest.raises(ValueError, match="not supported"):
        DpopKey(ec.generate_private_key(ec.SECP256K1()))


def test_the_thumbprint_is_rfc_7638_over_the_required_members_in_order() -> None:
    key = DpopKey.generate()
    jwk = key.public_jwk
    canonical = f'{{"crv":"{jwk["crv"]}","kty":"EC","x":"{jwk["x"]}","y":"{jwk["y"]}"}}'
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    assert key.thumbprint() == expected
