"""ModerationClient / AsyncModerationClient against a fake v2 server (tests/fake_triton.py): URLs, TLS, headers, indices.

The fake shows what a real Triton cannot: the headers and the TLS server name that arrived, and a
refusal of one chunk. The live-Triton side of the client is in tests/integration/test_serving.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.fake_triton import INGRESS_NAME, Certificates, FakeTriton, Http2Listener, make_certificates
from tiergate.client import (
    AsyncModerationClient,
    Endpoint,
    EndpointMismatch,
    ModerationClient,
    check_headers,
    check_settings,
    parse_header,
    parse_url,
)
from tiergate.errors import ClassificationError, TiergateError

LABELS = ["threats", "spam", "profanity"]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def fake() -> Iterator[FakeTriton]:
    with FakeTriton(LABELS) as server:
        yield server


@pytest.fixture
def tls_fake(certificates: Certificates) -> Iterator[FakeTriton]:
    with FakeTriton(LABELS, certificates=certificates) as server:
        yield server


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and len(text) < 600, text
    return text


# -- URLs and headers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("127.0.0.1:8000", Endpoint("http", "127.0.0.1", 8000)),
        ("http://tiergate.example.com", Endpoint("http", "tiergate.example.com", 80)),
        ("https://tiergate.example.com", Endpoint("https", "tiergate.example.com", 443)),
        ("HTTPS://Host.Example.com:8443/", Endpoint("https", "host.example.com", 8443)),
        ("[::1]:8001", Endpoint("http", "::1", 8001)),
        (" localhost:8000 ", Endpoint("http", "localhost", 8000)),
    ],
)
def test_urls_accepted(url: str, expected: Endpoint) -> None:
    assert parse_url(url) == expected


def test_endpoint_address_brackets_ipv6() -> None:
    assert parse_url("https://[::1]:9").address == "[::1]:9" and str(parse_url("h:1")) == "http://h:1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://host:abc", "malformed"),
        ("host:99999", "malformed"),
        ("host:0", "not in 1-65535"),
        ("ftp://host:21", "unknown scheme 'ftp'"),
        ("grpc://host:8001", "unknown scheme"),
        ("http://:8000", "names no host"),
        ("", "names no host"),
        ("127.0.0.1", "needs a port"),
        ("127.0.0.1:8000/v2/models", "has a path or query"),
        ("http://host:8000?x=1", "has a path or query"),
        ("http://host:8000#frag", "has a path or query"),
        ("http://user:pw@host:8000", "credentials in the URL"),
        ("http://[::1", "malformed"),
        ("http://[zz::1]:80", "malformed"),
        ("http://a b:80", "not a valid host name"),
        ("http://host_with_$:80", "not a valid host name"),
    ],
)
def test_malformed_urls_are_one_line(url: str, message: str) -> None:
    with pytest.raises(ClassificationError, match=message) as caught:
        parse_url(url)
    one_line(caught.value)


def test_headers_checked_and_values_never_echoed() -> None:
    assert parse_header("Host:  tiergate.ns.example.com ") == ("Host", "tiergate.ns.example.com")
    assert parse_header("X-Empty:") == ("X-Empty", "")
    for bad in ("no colon", ": value", "   : x"):
        with pytest.raises(ClassificationError, match="must look like 'Name: value'"):
            parse_header(bad)
    assert check_headers({"Authorization": "Bearer t"}) == {"Authorization": "Bearer t"}
    with pytest.raises(ClassificationError, match="not a valid HTTP header name"):
        check_headers({"Bad Name": "x"})
    with pytest.raises(ClassificationError, match="header Authorization: the value must be one line") as caught:
        check_headers({"Authorization": "Bearer secret\r\nX-Injected: 1"})
    assert "secret" not in str(caught.value)
    with pytest.raises(ClassificationError, match="set by the protocol"):
        check_headers({"Content-Length": "5"})
    with pytest.raises(ClassificationError, match="given twice"):
        check_headers({"Host": "a", "host": "b"})


def test_settings_refused_before_any_connection(certificates: Certificates, tmp_path: Path) -> None:
    with pytest.raises(ClassificationError, match="plain HTTP: a CA file or --insecure only applies to https"):
        ModerationClient("127.0.0.1:9", ca_file=certificates.ca)
    with pytest.raises(ClassificationError, match="plain HTTP"):
        ModerationClient("http://127.0.0.1:9", insecure=True)
    with pytest.raises(ClassificationError, match=r"CA file .* not found"):
        ModerationClient("https://127.0.0.1:9", ca_file=tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ClassificationError, match="not a PEM certificate bundle"):
        ModerationClient("https://127.0.0.1:9", ca_file=tmp_path / "junk.pem")
    with pytest.raises(ClassificationError, match="not available over gRPC"):
        AsyncModerationClient("https://127.0.0.1:9", "grpc", insecure=True)
    with pytest.raises(ClassificationError, match="unknown protocol"):
        ModerationClient("127.0.0.1:9", "smtp")  # type: ignore[arg-type]
    check_settings("https://127.0.0.1:9", "grpc", {"Host": INGRESS_NAME}, certificates.ca)  # fine, and nothing connects
    with pytest.raises(ClassificationError, match="not a valid HTTP header name"):
        check_settings("127.0.0.1:9", headers={"Bad Name": "x"})


# -- TLS -----------------------------------------------------------------------------------------------------
def test_tls_verifies_by_default(tls_fake: FakeTriton) -> None:
    with pytest.raises(EndpointMismatch, match=r"TLS certificate of .* is not trusted .*--ca-file") as caught:
        ModerationClient(tls_fake.url, retries=3, retry_delay_s=5)  # refused at once: no retry, no 35 s of backoff
    one_line(caught.value)
    assert not [request for request in tls_fake.requests]  # nothing was sent in clear or otherwise

    async def connect() -> None:
        async with AsyncModerationClient(tls_fake.url, retries=3, retry_delay_s=5):
            pass

    with pytest.raises(EndpointMismatch, match="not trusted") as caught:
        asyncio.run(connect())
    assert "unable to get local issuer certificate" in one_line(caught.value)


def test_tls_with_ca_file_and_host_header(tls_fake: FakeTriton, certificates: Certificates) -> None:
    headers = {"Host": INGRESS_NAME, "Authorization": "Bearer t0ken", "X-Tenant": "blue"}
    with ModerationClient(tls_fake.url, ca_file=certificates.ca, headers=headers) as client:
        assert client.url.startswith("https://127.0.0.1:")
        results = client.classify(["threats here", "all fine"])
    assert [item.flags for item in results] == [["threats"], []]
    assert tls_fake.server_names == [INGRESS_NAME]  # SNI is the Host's name, and the certificate was checked for it
    assert tls_fake.requests and all(
        request["headers"].get("Host") == INGRESS_NAME
        and request["headers"].get("Authorization") == "Bearer t0ken"
        and request["headers"].get("X-Tenant") == "blue"
        for request in tls_fake.requests
    )
    with pytest.raises(ClassificationError, match=r"\(as other.example.org\) is not trusted \(Hostname mismatch"):
        ModerationClient(tls_fake.url, ca_file=certificates.ca, headers={"Host": "other.example.org"}, retries=0)


def test_async_tls_with_ca_file_and_headers(tls_fake: FakeTriton, certificates: Certificates) -> None:
    async def run() -> list[int]:
        client = AsyncModerationClient(tls_fake.url, ca_file=certificates.ca, headers={"Host": INGRESS_NAME, "X-Tenant": "red"})
        assert tls_fake.requests == []  # nothing is sent before open()
        async with client:
            assert await client.ready()
            results = await client.classify(["spam " * 50] * 6)
        assert client._client is None
        return [item.windows for item in results]

    assert asyncio.run(run()) == [3] * 6
    assert set(tls_fake.server_names) == {INGRESS_NAME}
    assert all(request["headers"].get("X-Tenant") == "red" for request in tls_fake.requests)
    assert all(request["headers"].get("Host") == INGRESS_NAME for request in tls_fake.requests)


def test_insecure_skips_verification_with_a_warning(tls_fake: FakeTriton, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tiergate.client"), ModerationClient(tls_fake.url, insecure=True) as client:
        assert client.classify("spam")[0].flags == ["spam"]
    assert "TLS certificate verification is OFF" in caplog.text

    async def run() -> list[str]:
        async with AsyncModerationClient(tls_fake.url, insecure=True) as client:
            return (await client.classify("profanity"))[0].flags

    assert asyncio.run(run()) == ["profanity"]


def test_https_to_a_plain_http_port_is_one_line(fake: FakeTriton) -> None:
    with pytest.raises(ClassificationError, match=r"TLS with https://127.0.0.1:.* failed") as caught:
        ModerationClient(fake.url.replace("http://", "https://"), retries=0)
    one_line(caught.value)


# -- results, chunks and indices -----------------------------------------------------------------------------
def test_windows_read_when_the_ensemble_lists_it(fake: FakeTriton) -> None:
    with ModerationClient(fake.url) as client:
        assert client.outputs[-1] == "WINDOWS" and client.max_batch_size == 4
        results = client.classify(["short", "x" * 250])
    assert [item.windows for item in results] == [1, 3]
    assert results[1].as_dict()["windows"] == 3 and set(results[0].as_dict()) >= {"windows", "scores", "flags", "truncated"}


def test_windows_is_one_for_older_ensembles() -> None:
    with FakeTriton(LABELS, windows=False) as old, ModerationClient(old.url) as client:
        assert "WINDOWS" not in client.outputs
        assert [item.windows for item in client.classify(["a", "b" * 500])] == [1, 1]


def test_large_inputs_chunked_in_order(fake: FakeTriton) -> None:
    texts = [f"text {index} {'spam' if index % 3 == 0 else ''}" for index in range(10)]
    with ModerationClient(fake.url) as client:
        results = client.classify(texts, ["general/message"] * 5 + ["adult/bio"] * 5)
    assert [len(batch) for batch in fake.batches] == [4, 4, 2]
    assert [item.text for item in results] == texts
    assert [item.context for item in results] == ["general/message"] * 5 + ["adult/bio"] * 5
    assert [bool(item.flags) for item in results] == [index % 3 == 0 for index in range(10)]


def test_a_refused_chunk_names_the_callers_index_and_keeps_earlier_results(fake: FakeTriton) -> None:
    texts = [f"text {index}" for index in range(12)]
    texts[9] = "REFUSE this one"
    with ModerationClient(fake.url, retries=2) as client, pytest.raises(ClassificationError) as caught:
        client.classify(texts)
    assert one_line(caught.value) == "items 8-11: in ensemble 'tiergate', item 9: refused by the fake server"
    assert [item.text for item in caught.value.partial] == texts[:8]
    assert len(fake.batches) == 3  # a refusal is not retried

    async def run() -> ClassificationError:
        async with AsyncModerationClient(fake.url) as client:
            try:
                await client.classify(texts)
            except ClassificationError as error:
                return error
        raise AssertionError("not refused")

    error = asyncio.run(run())
    assert str(error).startswith("items 8-11:") and "item 9:" in str(error) and len(error.partial) == 8


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"\xff\xfe bytes", r"item 6: text is not valid UTF-8 \(byte 0xff at position 0\)"),
        ("\udcff\udcfe", r"item 6: text is not valid UTF-8"),  # a shell argument's undecodable bytes
        ("   ", "item 6: text is empty or whitespace"),
        ("", "item 6: text is empty or whitespace"),
        (42, "item 6: text must be str or bytes, not int"),
        (None, "item 6: text must be str or bytes, not NoneType"),
    ],
)
def test_bad_items_named_by_the_callers_index_before_anything_is_sent(fake: FakeTriton, bad: object, message: str) -> None:
    texts: list = [f"ok {index}" for index in range(9)]
    texts[6] = bad
    with ModerationClient(fake.url) as client, pytest.raises(ClassificationError, match=message) as caught:
        client.classify(texts)
    one_line(caught.value)
    assert fake.batches == []  # checked up front: no chunk went out, nothing half done


def test_bad_contexts_named_by_index(fake: FakeTriton) -> None:
    with ModerationClient(fake.url) as client:
        with pytest.raises(ClassificationError, match="item 5: context 'adult/nowhere': unknown surface"):
            client.classify(["x"] * 7, ["general/message"] * 5 + ["adult/nowhere", "general/bio"])
        with pytest.raises(ClassificationError, match="3 texts but 2 contexts"):
            client.classify(["a", "b", "c"], ["general/message", "adult/bio"])
        with pytest.raises(ClassificationError, match="item 1: context must be a str"):
            client.classify(["a", "b"], ["general/message", 7])  # type: ignore[list-item]
    assert fake.batches == []


def test_headers_on_every_http_call_and_context_manager_closes(fake: FakeTriton) -> None:
    with ModerationClient(fake.url, headers={"Host": INGRESS_NAME, "Authorization": "Bearer abc"}) as client:
        assert client.ready()
        client.classify(["a"] * 5)
    assert client._client is None
    paths = [request["path"] for request in fake.requests]
    assert "/v2/models/tiergate/config" in paths and "/v2/health/ready" in paths and paths.count("/v2/models/tiergate/infer") == 2
    assert all(request["headers"].get("Host") == INGRESS_NAME for request in fake.requests)
    assert all(request["headers"].get("Authorization") == "Bearer abc" for request in fake.requests)


def test_http_client_at_a_grpc_port_is_one_line() -> None:
    """Triton's gRPC port answers an HTTP/1.1 request with HTTP/2 frames; the listener replays those bytes."""
    with Http2Listener() as listener:
        with pytest.raises(EndpointMismatch, match=r"does not answer HTTP/1.1 .* is this the gRPC port") as caught:
            ModerationClient(f"127.0.0.1:{listener.port}", retries=2, retry_delay_s=5)
        one_line(caught.value)

        async def connect() -> None:
            async with AsyncModerationClient(f"127.0.0.1:{listener.port}", retries=2, retry_delay_s=5):
                pass

        with pytest.raises(EndpointMismatch, match="is this the gRPC port") as caught:
            asyncio.run(connect())
        one_line(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "fragment"),
    [
        (404, b"<html>404 page not found</html>", "route with --header 'Host: <isvc>.<namespace>.<domain>'"),
        (401, b'{"error": "unauthorized"}', "unauthorized (the endpoint wants credentials"),
        (200, b"<html>log in</html>", "answered with something that is not JSON"),
        (200, b"", "answered with something that is not JSON"),
        (200, b"[1, 2]", "something that is not a Triton model config"),
        (200, b'{"parameters": 5}', "something that is not a Triton model config"),
        (200, b'{"parameters": {"labels": {"string_value": "[1, 2]"}}}', "labels parameter is not a list of names"),
        (200, b"{}", "publishes no label list"),
    ],
)
def test_answers_that_are_not_triton_are_one_line(status: int, body: bytes, fragment: str) -> None:
    """What an ingress that does not route, a login page or another service answers: one line, no traceback."""
    with FakeTriton(LABELS, config_answer=(status, body + (b"<p>more</p>\n" * 500 if body.startswith(b"<") else b""))) as other:
        for client in (
            lambda: ModerationClient(other.url, retries=0),
            lambda: asyncio.run(AsyncModerationClient(other.url, retries=0).open()),
        ):
            with pytest.raises(TiergateError) as caught:  # LabelMismatchError for {}
                client()
            assert fragment in one_line(caught.value)


def test_unreachable_after_retries() -> None:
    with pytest.raises(ClassificationError, match=r"server not reachable at http://127.0.0.1:9 after 2 attempts"):
        ModerationClient("127.0.0.1:9", retries=1, retry_delay_s=0.01)


def test_grpc_headers_tls_and_indices(tmp_path: Path) -> None:
    """gRPC in a process of its own (tritonclient.grpc and kserve cannot share one): see tests/fake_triton_grpc.py."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.fake_triton_grpc", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        env={"GRPC_VERBOSITY": "NONE", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert [item["flags"] for item in report["plain"]["ok"]] == [["threats"], ["spam"], []]
    assert [item["windows"] for item in report["plain"]["ok"]] == [1, 2, 1]
    assert report["refused"] == {"error": "items 4-6: in ensemble 'tiergate', item 5: refused by the fake server", "partial": 4}
    assert report["ready"] is True and report["async"] == {"ok": [3] * 6}
    metadata = report["metadata"]
    assert len(metadata) >= 8  # config, 2 + 2 infers, ready x2, async config + 2 infers
    assert all(item.get("authorization") == "Bearer secret" and item.get("x-tenant") == "blue" for item in metadata)
    assert not any("host" in item or "Authorization" in item for item in metadata)  # lower case; Host is the authority
    assert "TLS with grpcs://127.0.0.1" in report["tls_untrusted"]["error"]
    assert "CERTIFICATE_VERIFY_FAILED" in report["tls_untrusted"]["error"] and "--ca-file" in report["tls_untrusted"]["error"]
    assert report["tls_ca_file"] == {"ok": "fake-grpc-1"} and report["tls_host"] == {"ok": "fake-grpc-1"}
    assert "Hostname Verification Check failed" in report["tls_wrong_host"]["error"]
