"""A small KServe-v2 server that speaks like the tiergate ensemble (HTTP, optionally TLS; gRPC on request).

For client tests that must see the server side (which headers arrived, which TLS name was asked
for) or make it refuse one chunk: real Triton cannot show either. Scores are a pure function of
the text: a label scores 0.9 when its name occurs in the text, else 0.1; a text containing
REFUSE is refused by the server with an `item N:` message like the real tokenizer's; WINDOWS,
when the config lists it, is 1 + len(text) // 100. Certificates are made at test time
(`cryptography`), nothing is downloaded.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

CONTEXTS = {"audiences": ["general", "adult"], "surfaces": ["message", "bio", "listing", "review"]}
INGRESS_NAME = "tiergate.models.example.com"
HTTP2_SERVER_PREFACE = (  # what Triton's gRPC port answers to an HTTP/1.1 request: SETTINGS, then GOAWAY
    b"\x00\x00\x18\x04\x00\x00\x00\x00\x00\x00\x04\x00@\x00\x00\x00\x05\x00@\x00\x00\x00\x06\x00\x00@\x00\xfe\x03"
    b"\x00\x00\x00\x01\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00?\x00\x01"
)


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA that signed the server certificate (what a client passes as ca_file)
    cert: Path
    key: Path


def make_certificates(folder: Path, names: Sequence[str] = ("localhost", INGRESS_NAME)) -> Certificates:
    """A throw-away CA and a server certificate for `names` and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tiergate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alternative = [x509.DNSName(name) for name in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def model_config(labels: Sequence[str], max_batch_size: int, windows: bool, version: str = "fake-1") -> dict[str, Any]:
    outputs = [{"name": name} for name in ("SCORES", "FLAGS", "MAX_TIER", "TRUNCATED")]
    if windows:
        outputs.append({"name": "WINDOWS"})
    return {
        "name": "tiergate",
        "platform": "ensemble",
        "max_batch_size": max_batch_size,
        "output": outputs,
        "parameters": {
            "labels": {"string_value": json.dumps(list(labels))},
            "contexts": {"string_value": json.dumps(CONTEXTS)},
            "model_version": {"string_value": version},
        },
    }


def answer(labels: Sequence[str], texts: Sequence[str], windows: bool) -> dict[str, np.ndarray]:
    """The outputs for a batch; raises ValueError('item N: ...') for a text the fake refuses."""
    for index, text in enumerate(texts):
        if "REFUSE" in text:
            raise ValueError(f"in ensemble 'tiergate', item {index}: refused by the fake server")
    scores = np.array([[0.9 if label in text else 0.1 for label in labels] for text in texts], dtype=np.float32)
    flags = scores > 0.5
    outputs = {
        "SCORES": scores,
        "FLAGS": flags,
        "MAX_TIER": np.array([[1 if row.any() else 0] for row in flags], dtype=np.int32),
        "TRUNCATED": np.zeros((len(texts), 1), dtype=bool),
    }
    if windows:
        outputs["WINDOWS"] = np.array([[1 + len(text) // 100] for text in texts], dtype=np.int32)
    return outputs


DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(bool): "BOOL", np.dtype(np.int32): "INT32"}


def _bytes_elements(raw: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        (size,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return items


@dataclass
class FakeTriton:
    """The HTTP server: `with FakeTriton(labels) as fake:` then `fake.url`; `fake.requests` records what arrived."""

    labels: Sequence[str]
    max_batch_size: int = 4
    windows: bool = True
    certificates: Certificates | None = None
    config_answer: tuple[int, bytes] | None = None  # (status, raw body) instead of the config: a proxy, a login page
    model_version: str = "fake-1"  # what the ensemble config reports (the operator checks it is the canary's)
    requests: list[dict[str, Any]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)

    def __enter__(self) -> FakeTriton:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> None:
                fake.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items())})

            def do_GET(self) -> None:
                self._record()
                if self.path == "/v2/models/tiergate/config" and fake.config_answer is not None:
                    status, raw = fake.config_answer
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                elif self.path == "/v2/models/tiergate/config":
                    self._send(200, model_config(fake.labels, fake.max_batch_size, fake.windows, fake.model_version))
                elif self.path in ("/v2/health/ready", "/v2/health/live", "/v2/models/tiergate/ready"):
                    self._send(200)
                else:
                    self._send(404, {"error": f"no {self.path}"})

            def do_POST(self) -> None:
                self._record()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v2/models/tiergate/infer":
                    self._send(404, {"error": f"no {self.path}"})
                    return
                size = int(self.headers.get("Inference-Header-Content-Length", len(body)))
                request, blob = json.loads(body[:size]), body[size:]
                tensors: dict[str, list[bytes]] = {}
                for tensor in request["inputs"]:
                    if "data" in tensor:
                        tensors[tensor["name"]] = [str(item).encode() for item in tensor["data"]]
                        continue
                    length = tensor["parameters"]["binary_data_size"]
                    tensors[tensor["name"]], blob = _bytes_elements(blob[:length]), blob[length:]
                texts = [item.decode("utf-8") for item in tensors["TEXT"]]
                fake.batches.append(texts)
                try:
                    outputs = answer(fake.labels, texts, fake.windows)
                except ValueError as error:
                    self._send(400, {"error": str(error)})
                    return
                wanted = [item["name"] for item in request.get("outputs", [])] or list(outputs)
                self._send(
                    200,
                    {
                        "model_name": "tiergate",
                        "outputs": [
                            {
                                "name": name,
                                "datatype": DATATYPES[outputs[name].dtype],
                                "shape": list(outputs[name].shape),
                                "data": outputs[name].reshape(-1).tolist(),
                            }
                            for name in wanted
                        ],
                    },
                )

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.certificates is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certificates.cert, self.certificates.key)
            context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)  # type: ignore[assignment,misc]
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.certificates is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class Http2Listener:
    """A TCP port that answers like Triton's gRPC port does to an HTTP/1.1 request (HTTP/2 SETTINGS + GOAWAY)."""

    def __enter__(self) -> Http2Listener:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen()
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    connection.recv(65536)
                    connection.sendall(HTTP2_SERVER_PREFACE)
                except OSError:
                    pass

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()
