"""A traceback is never a user's answer: each failure issue 15 found, run as a user runs it (the installed script).

Every case: exit 2, exactly one `error: ...` line on stderr, no traceback anywhere. An unexpected
exception is one line too (exit 1), and TIERGATE_DEBUG=1 brings the traceback back. The live-Triton
twin of the HTTP-client-at-the-gRPC-port case is in tests/integration/test_serving.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_triton import Certificates, FakeTriton, Http2Listener, make_certificates
from tiergate.hashing import sha256_json
from tiergate.taxonomy import Taxonomy

TIERGATE = Path(sys.executable).parent / "tiergate"


def tiergate(*args: str | bytes, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """The console script, as a shell runs it (bytes arguments stay bytes: invalid UTF-8 reaches argv as it is)."""
    environment = {key: value for key, value in os.environ.items() if key != "TIERGATE_DEBUG"} | (env or {})
    return subprocess.run([str(TIERGATE), *args], capture_output=True, env=environment, timeout=180)


def assert_one_line(result: subprocess.CompletedProcess[bytes], *fragments: str, code: int = 2) -> str:
    stderr = result.stderr.decode("utf-8", "backslashreplace")
    output = stderr + result.stdout.decode("utf-8", "backslashreplace")
    assert "Traceback" not in output, output
    assert result.returncode == code, (result.returncode, output)
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    for fragment in fragments:
        assert fragment in stderr, (fragment, stderr)
    return stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(taxonomy: Taxonomy) -> Iterator[FakeTriton]:
    """A fake ensemble with the taxonomy's labels, so `classify` gets as far as the texts."""
    with FakeTriton(taxonomy.labels, max_batch_size=8) as fake:
        yield fake


@pytest.fixture(scope="module")
def http2() -> Iterator[Http2Listener]:
    with Http2Listener() as listener:
        yield listener


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


# -- publish / promote: missing repository.json or gate.json -------------------------------------------------------
def fake_manifest(folder: Path, taxonomy: Taxonomy) -> Path:
    """A well-formed repository.json listing a gate.json that is not there."""
    folder.mkdir(parents=True)
    files = {"gate.json": "0" * 64}
    manifest = {
        "model_name": "tiergate",
        "model_version": "v1",
        "variant": "local",
        "labels": taxonomy.labels,
        "taxonomy_sha256": "0" * 64,
        "gate_digest": "0" * 64,
        "gate_summary": {},
        "files": files,
        "digest": sha256_json(files),
    }
    (folder / "repository.json").write_text(json.dumps(manifest))
    return folder


def test_publish_without_repository_json_or_gate_json(tmp_path: Path, taxonomy: Taxonomy) -> None:
    assert_one_line(tiergate("publish", str(tmp_path / "nowhere")), "does not exist")
    (tmp_path / "only-gate").mkdir()
    (tmp_path / "only-gate" / "gate.json").write_text("{}")
    assert_one_line(tiergate("publish", str(tmp_path / "only-gate")), "repository.json is missing")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "repository.json").write_text("not json")
    assert_one_line(tiergate("publish", str(tmp_path / "garbage")), "repository.json is not valid JSON")
    no_gate = fake_manifest(tmp_path / "no-gate", taxonomy)
    assert_one_line(tiergate("publish", str(no_gate)), "gate.json")
    assert_one_line(tiergate("publish", b"/tmp/\xff\xfe-not-utf8"), "does not exist")


def test_promote_apply_without_gate_json_or_repository_json(tmp_path: Path, taxonomy: Taxonomy) -> None:
    (tmp_path / "evaluation").mkdir()
    repository = fake_manifest(tmp_path / "repository", taxonomy)
    apply = ("promote", "apply", "--evaluation")
    assert_one_line(tiergate(*apply, str(tmp_path / "evaluation"), "--repository", str(repository)), "gate.json not found")
    (tmp_path / "evaluation" / "gate.json").write_text("{broken")
    assert_one_line(tiergate(*apply, str(tmp_path / "evaluation"), "--repository", str(repository)), "gate.json")
    assert_one_line(tiergate(*apply, str(tmp_path / "nowhere"), "--repository", str(tmp_path / "nowhere")), "gate.json not found")


# -- pipeline submit: unreachable or malformed host -----------------------------------------------------------------
def test_pipeline_submit_to_an_unreachable_or_malformed_host(http2: Http2Listener) -> None:
    submit = ("pipeline", "submit", "--timeout", "5", "--host")
    assert_one_line(tiergate(*submit, f"http://127.0.0.1:{closed_port()}"), "connection refused")
    assert_one_line(tiergate(*submit, "http://[::1"), "is not a valid URL")
    assert_one_line(tiergate(*submit, "http://127.0.0.1:99999"), "invalid port")
    assert_one_line(tiergate(*submit, "kfp.example.com"), "is not an http(s) URL")
    assert_one_line(tiergate(*submit, f"http://127.0.0.1:{http2.port}"), "failed")  # something that is not HTTP/1.1


# -- classify / regression ----------------------------------------------------------------------------------------
def test_classify_an_invalid_utf8_argument(served: FakeTriton) -> None:
    url = ("--url", served.url)
    assert_one_line(tiergate("classify", *url, b"\xff\xfe"), "item 0: text is not valid UTF-8")
    assert_one_line(tiergate("classify", *url, "fine", b"bad \xc3\x28 utf8"), "item 1: text is not valid UTF-8")
    assert_one_line(tiergate("classify", *url, "--context", b"adult/\xff", "text"), "item 0: context", "not valid UTF-8")
    assert_one_line(tiergate("classify", *url, "   "), "item 0: text is empty or whitespace")
    ok = tiergate("classify", *url, "--json", "--header", "X-Tenant: blue", "threats and spam")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["windows"] == 1 and served.requests[-1]["headers"]["X-Tenant"] == "blue"


def test_an_http_client_at_a_grpc_port(http2: Http2Listener) -> None:
    """Triton's gRPC port answers HTTP/1.1 with HTTP/2 frames (the listener replays them): was a 33-line traceback."""
    url = f"127.0.0.1:{http2.port}"
    assert_one_line(tiergate("classify", "--url", url, "hello"), "does not answer HTTP/1.1", "gRPC port")
    assert_one_line(tiergate("regression", "--url", url, "--wait-s", "0"), "does not answer HTTP/1.1")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://host:abc", "malformed"),
        ("ftp://host:21", "unknown scheme 'ftp'"),
        ("127.0.0.1:8000/v2/models/tiergate", "has a path or query"),
        ("http://:8000", "names no host"),
        ("127.0.0.1", "needs a port"),
        ("http://[::1", "malformed"),
        ("https://user:secret@host", "credentials in the URL"),
    ],
)
def test_a_malformed_url(url: str, fragment: str) -> None:
    stderr = assert_one_line(tiergate("classify", "--url", url, "hello"), fragment)
    assert "secret" not in stderr or "credentials" in stderr
    assert_one_line(tiergate("regression", "--url", url, "--wait-s", "60"), fragment)  # at once, not after 60 s


def test_connection_options_refused_in_one_line(served: FakeTriton, certificates: Certificates) -> None:
    url = ("--url", served.url)
    assert_one_line(tiergate("classify", *url, "--header", "no-colon", "x"), "must look like 'Name: value'")
    assert_one_line(tiergate("classify", *url, "--header", "A: 1", "--header", "a: 2", "x"), "given twice")
    assert_one_line(tiergate("classify", *url, "--insecure", "x"), "plain HTTP")
    assert_one_line(tiergate("classify", "--url", "https://127.0.0.1:9", "--protocol", "grpc", "--insecure", "x"), "gRPC")
    with FakeTriton(["threats"], certificates=certificates) as tls:
        assert_one_line(tiergate("classify", "--url", tls.url, "x"), "is not trusted", "--ca-file")
        started = time.monotonic()
        assert_one_line(tiergate("regression", "--url", tls.url, "--wait-s", "120"), "is not trusted")
        assert time.monotonic() - started < 60  # waiting cannot fix an untrusted certificate: refused at once
        assert_one_line(tiergate("regression", "--url", tls.url, "--wait-s", "120", "--header", "Bad Name: x"), "header name")
        # trusted with the CA file: the wrong labels are what is refused now (the fake serves one label)
        assert_one_line(tiergate("classify", "--url", tls.url, "--ca-file", str(certificates.ca), "x"), "label")


# -- the general rule ---------------------------------------------------------------------------------------------
BOOM = "import tiergate.cli.main as m\ndef boom():\n    raise RuntimeError('boom\\nsecond line')\nm.app = boom\nm.main()\n"


def test_an_unexpected_exception_is_one_line_unless_debugging() -> None:
    result = subprocess.run([sys.executable, "-c", BOOM], capture_output=True, env={**os.environ, "TIERGATE_DEBUG": ""})
    stderr = assert_one_line(result, "unexpected RuntimeError: boom second line", "TIERGATE_DEBUG=1", code=1)
    assert stderr.count("\n") == 1
    debug = subprocess.run([sys.executable, "-c", BOOM], capture_output=True, env={**os.environ, "TIERGATE_DEBUG": "1"})
    assert debug.returncode == 1 and b"Traceback" in debug.stderr and b"RuntimeError: boom" in debug.stderr
