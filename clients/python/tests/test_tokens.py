"""TaskTokenSource against a stand-in token endpoint over mTLS (certificates made here)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from conftest import verify_with_jwk
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mandate_client import TOKEN_EXCHANGE, DpopKey, TaskTokenSource, TokenError


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _cert(subject_key, issuer_key, issuer_name, *, ca: bool, san: x509.GeneralName | None, cn: str):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and an agent SVID, in the layout of `mandate agent create`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(ca_key, ca_key, None, ca=True, san=x509.UniformResourceIdentifier("spiffe://test.local"), cn="ca")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert(
        server_key, ca_key, ca.subject, ca=False, san=x509.IPAddress(ipaddress.ip_address("127.0.0.1")), cn="server"
    )
    agent_key = ec.generate_private_key(ec.SECP256R1())
    agent = _cert(
        agent_key, ca_key, ca.subject, ca=False,
        san=x509.UniformResourceIdentifier("spiffe://test.local/agent/reporter"), cn="reporter",
    )
    svid = tmp_path / "reporter"
    svid.mkdir()
    (svid / "svid.pem").write_bytes(agent.public_bytes(serialization.Encoding.PEM))
    (svid / "svid.key").write_bytes(_pem_key(agent_key))
    (svid / "bundle.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(_pem_key(server_key))
    return tmp_path


class TokenEndpoint:
    """Answers POST /oauth/token over TLS, requiring a client certificate; records requests."""

    def __init__(self, pki, ttl: int = 300, refuse: bool = False) -> None:
        self.requests: list[dict] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                peer = self.connection.getpeercert()
                endpoint.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "form": parse_qs(body.decode()), "peer": peer}
                )
                if refuse:
                    status, answer = 403, {"error": "access_denied", "error_description": "no tool left"}
                else:
                    n = len(endpoint.requests)
                    status, answer = 200, {
                        "access_token": f"task-token-{n}",
                        "token_type": "DPoP",
                        "expires_in": ttl,
                        "task_id": f"task-{n}",
                    }
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki / "server.pem", pki / "server.key")
        context.load_verify_locations(pki / "reporter" / "bundle.pem")
        context.verify_mode = ssl.CERT_REQUIRED
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/oauth/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


DETAILS = {
    "type": "agent_task",
    "purpose": "weekly report",
    "tools": ["everything.echo"],
    "data_domains": ["reports"],
    "capabilities": ["read"],
    "ttl_seconds": 300,
}


def test_a_token_is_obtained_over_mtls_with_a_dpop_proof_and_cached(pki) -> None:
    endpoint = TokenEndpoint(pki)
    try:
        source = TaskTokenSource(pki / "reporter", endpoint.url, DETAILS)
        assert source.token() == "task-token-1"
        assert source.token() == "task-token-1"
        assert source.task_id == "task-1"
        assert "access_token" not in source.answer
        assert len(endpoint.requests) == 1
        request = endpoint.requests[0]
        assert request["path"] == "/oauth/token"
        # The client presented its SVID.
        assert ("URI", "spiffe://test.local/agent/reporter") in request["peer"]["subjectAltName"]
        assert request["form"]["grant_type"] == [TOKEN_EXCHANGE]
        assert json.loads(request["form"]["authorization_details"][0]) == [DETAILS]
        header, claims = verify_with_jwk(request["headers"]["DPoP"])
        assert claims["htm"] == "POST" and claims["htu"] == endpoint.url and "ath" not in claims
        # Bound to the SVID key by default.
        assert header["jwk"] == DpopKey.from_pem(pki / "reporter" / "svid.key").public_jwk
    finally:
        endpoint.close()


def test_the_token_is_renewed_before_it_expires(pki) -> None:
    endpoint = TokenEndpoint(pki, ttl=2)
    try:
        source = TaskTokenSource(pki / "reporter", endpoint.url, [DETAILS], refresh_margin=30)
        assert source.token() == "task-token-1"
        # A ttl below the margin renews at half-life, not on every call.
        assert source.token() == "task-token-1"
        time.sleep(1.2)
        assert asyncio.run(source.atoken()) == "task-token-2"
        assert len(endpoint.requests) == 2
    finally:
        endpoint.close()


def test_a_refusal_raises_with_the_oauth_error(pki) -> None:
    endpoint = TokenEndpoint(pki, refuse=True)
    try:
        source = TaskTokenSource(pki / "reporter", endpoint.url, DETAILS)
        with pytest.raises(TokenError) as err:
            source.token()
        assert (err.value.status, err.value.error, err.value.description) == (403, "access_denied", "no tool left")
    finally:
        endpoint.close()


def test_a_missing_svid_file_is_named(pki) -> None:
    (pki / "reporter" / "bundle.pem").unlink()
    with pytest.raises(FileNotFoundError, match="bundle.pem"):
        TaskTokenSource(pki / "reporter", "https://127.0.0.1:1/oauth/token", DETAILS)
