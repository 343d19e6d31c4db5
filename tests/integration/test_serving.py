"""The real local Triton server on a repository built from a tiny model: parity and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as http
from tritonclient.utils import InferenceServerException

from tests.conftest import tiny_profile
from tests.trust_helpers import lenient
from tiergate.client import ModerationClient, to_arrays
from tiergate.components.package.repository import build_repository, write_repository
from tiergate.errors import ClassificationError, PromotionRefused
from tiergate.evasion import TRANSFORMS, detection_table, positive_probes
from tiergate.gate import load_gate, write_gate
from tiergate.hashing import read_json
from tiergate.inference import ModerationPipeline, ThresholdSet
from tiergate.paths import project_path
from tiergate.records import Context, read_jsonl
from tiergate.regression import load_suites
from tiergate.serving.server import TritonServer
from tiergate.taxonomy import Taxonomy
from tiergate.trust import verify_local_repository

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evaluation(tiny_evaluation: Path) -> Path:
    return tiny_evaluation


@pytest.fixture(scope="module")
def repository(tiny_repository: Path) -> Path:
    return tiny_repository


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with TritonServer(repository, tmp_path_factory.mktemp("triton")) as running:
        yield running


def test_packaging_refuses_a_failed_gate_or_changed_files(
    taxonomy: Taxonomy, tiny_export: Path, evaluation: Path, tiny_base: Path, tmp_path: Path
) -> None:
    settings = tiny_profile(tiny_base).serving
    gate = read_json(evaluation / "gate.json")
    assert not gate["passed"]  # an untrained tiny model must not pass
    with pytest.raises(PromotionRefused, match="the gate did not pass"):
        build_repository(taxonomy, settings, tiny_export, evaluation, tmp_path / "r", "v")
    passed = tmp_path / "eval"
    passed.mkdir()
    for name in ("thresholds.json",):
        (passed / name).write_bytes((evaluation / name).read_bytes())
    (passed / "gate.json").write_text(json.dumps({**gate, "passed": True}))  # typed in by hand
    with pytest.raises(PromotionRefused, match="says passed=True, decision='reject', but its rules say reject"):
        build_repository(taxonomy, settings, tiny_export, passed, tmp_path / "r", "v")
    write_gate(passed, lenient(load_gate(evaluation), evaluation))  # a consistent passing record ...
    thresholds = json.loads((passed / "thresholds.json").read_text())
    thresholds["thresholds"]["threats"] = 0.99  # a threshold changed after the gate judged it
    (passed / "thresholds.json").write_text(json.dumps(thresholds))
    with pytest.raises(PromotionRefused, match=r"thresholds thresholds\.json has sha256 .* but the gate judged"):
        build_repository(taxonomy, settings, tiny_export, passed, tmp_path / "r", "v")
    assert not (tmp_path / "r").exists()


def test_repository_layout_and_configs(repository: Path, taxonomy: Taxonomy) -> None:
    manifest = json.loads((repository / "repository.json").read_text())
    assert manifest["labels"] == taxonomy.labels and manifest["variant"] == "local"
    assert set(path.split("/")[0] for path in manifest["files"]) == {
        "tokenizer",
        "classifier",
        "postprocess",
        "tiergate",
        "gate.json",
    }
    verified = verify_local_repository(repository)  # the check `tiergate serve` and `repository fetch` make
    assert verified.gate.digest() == manifest["gate_digest"]
    ensemble = (repository / "tiergate" / "config.pbtxt").read_text()
    assert 'platform: "ensemble"' in ensemble and json.dumps(json.dumps(taxonomy.labels)) in ensemble
    classifier = (repository / "classifier" / "config.pbtxt").read_text()
    assert 'backend: "python"' in classifier and "KIND_CPU" in classifier and "preferred_batch_size: [8, 16, 32]" in classifier


def test_production_variant_uses_onnxruntime_on_gpu(
    taxonomy: Taxonomy, tiny_export: Path, evaluation: Path, tmp_path: Path
) -> None:
    from tiergate.profiles import load_profile

    settings = load_profile("production").serving
    write_repository(taxonomy, settings, tiny_export, evaluation, tmp_path / "p", "v", load_gate(evaluation))
    classifier = (tmp_path / "p" / "classifier" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in classifier and "KIND_GPU" in classifier
    assert not (tmp_path / "p" / "classifier" / "1" / "model.py").exists()
    assert (tmp_path / "p" / "classifier" / "1" / "model.onnx").read_bytes() == (tiny_export / "model_fp16.onnx").read_bytes()


def test_triton_matches_in_process_evaluation(
    server: TritonServer, taxonomy: Taxonomy, tiny_export: Path, evaluation: Path, merged_small: Path
) -> None:
    """The gate judged the in-process pipeline; Triton must serve the same numbers."""
    records = read_jsonl(merged_small / "test.jsonl")[:150]
    pipeline = ModerationPipeline(
        tiny_export / "model_fp16.onnx",
        tiny_export / "tokenizer",
        ThresholdSet.load(evaluation / "thresholds.json", taxonomy.labels),
    )
    expected = pipeline.classify([r.text for r in records], [r.context for r in records])
    client = ModerationClient(server.http_url, expected_labels=taxonomy.labels)
    served = client.classify([r.text for r in records], [str(r.context) for r in records])
    scores, flags = to_arrays(served, taxonomy.labels)
    assert np.abs(scores - expected.scores).max() < 1e-5
    assert np.array_equal(flags, expected.flags)
    assert [item.max_tier for item in served] == expected.max_tier.tolist()


def _raw_infer(server: TritonServer, texts: list, contexts: list, text_type: str = "BYTES") -> None:
    client = http.InferenceServerClient(server.http_url)
    text_array = np.array([[t] for t in texts], dtype=object if text_type == "BYTES" else np.int32)
    context_array = np.array([[c] for c in contexts], dtype=object)
    inputs = [
        http.InferInput("TEXT", list(text_array.shape), text_type),
        http.InferInput("CONTEXT", list(context_array.shape), "BYTES"),
    ]
    inputs[0].set_data_from_numpy(text_array)
    inputs[1].set_data_from_numpy(context_array)
    client.infer("tiergate", inputs)


@pytest.mark.parametrize(
    ("texts", "contexts", "text_type", "message"),
    [
        ([b""], [b"general/message"], "BYTES", "empty or whitespace"),
        ([b"   \t "], [b"general/message"], "BYTES", "empty or whitespace"),
        ([b"\xff\xfe bad"], [b"general/message"], "BYTES", "not valid UTF-8"),
        ([b"hello"], [b"kids/message"], "BYTES", "unknown audience 'kids'"),
        ([b"x" * 5000], [b"general/message"], "BYTES", "the limit is 4000"),
        ([1], [b"general/message"], "INT32", "expects 'BYTES'"),
        ([b"hello"] * 65, [b"general/message"] * 65, "BYTES", "batch-size must be <= 64"),
    ],
    ids=["empty", "whitespace", "invalid-utf8", "bad-context", "too-long", "wrong-dtype", "batch-over-limit"],
)
def test_bad_input_gets_a_clear_error_and_the_server_survives(
    server: TritonServer, texts: list, contexts: list, text_type: str, message: str
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        _raw_infer(server, texts, contexts, text_type)
    assert message.lower() in str(caught.value).lower()
    assert server.alive()
    assert ModerationClient(server.http_url).classify("still answering?")[0].scores


def test_mismatched_shapes_are_refused(server: TritonServer) -> None:
    client = http.InferenceServerClient(server.http_url)
    text = http.InferInput("TEXT", [2, 1], "BYTES")
    text.set_data_from_numpy(np.array([[b"a"], [b"b"]], dtype=object))
    context = http.InferInput("CONTEXT", [3, 1], "BYTES")
    context.set_data_from_numpy(np.array([[b"general/message"]] * 3, dtype=object))
    with pytest.raises(InferenceServerException):
        client.infer("tiergate", [text, context])
    assert server.alive()


def test_long_text_is_read_in_windows_and_one_beyond_them_is_refused(server: TritonServer) -> None:
    client = ModerationClient(server.http_url)
    long_text = " ".join(["you will regret it"] * 60)
    result = client.classify(long_text, "general/message")[0]
    assert result.windows > 1 and not result.truncated and len(result.scores) == 33
    assert client.classify("short and sweet")[0].windows == 1
    assert client.classify("i kn0w wh3re y0u l1ve")[0].windows == 2  # the leetspeak reading is a second row
    unreadable = "ab " * 1333  # under max_text_chars, but more tokens than max_windows windows read
    with pytest.raises(ClassificationError, match="longer than the 48 windows"):
        client.classify(unreadable, "general/message")
    assert client.classify("still answering?")[0].scores


def test_served_windows_and_readings_match_in_process_evaluation(
    server: TritonServer, taxonomy: Taxonomy, tiny_export: Path, evaluation: Path
) -> None:
    """Long and disguised texts: the ensemble's rows and pooling reproduce what the gate judged, number for number."""
    pipeline = ModerationPipeline(
        tiny_export / "model_fp16.onnx", tiny_export / "tokenizer", ThresholdSet.load(evaluation / "thresholds.json")
    )
    plain = "i know where you live now, so watch your back"
    texts = [transform(plain) for transform in TRANSFORMS.values()] + [" ".join(["you will regret it"] * 60)]
    contexts = [Context(audience="general", surface="message")] * len(texts)
    expected = pipeline.classify(texts, contexts)
    served = ModerationClient(server.http_url).classify(texts, "general/message")
    scores, flags = to_arrays(served, taxonomy.labels)
    assert np.abs(scores - expected.scores).max() < 1e-5 and np.array_equal(flags, expected.flags)


FOLDED_BACK = ["fullwidth", "math_bold", "rtl_override", "spaced_letters", "cyrillic_homoglyphs", "zero_width", "soft_hyphens"]


def test_disguised_texts_score_exactly_like_the_plain_text(server: TritonServer, taxonomy: Taxonomy) -> None:
    """Whatever the model, a disguise the normalisation folds back reaches it as the plain text: same scores."""
    client = ModerationClient(server.http_url)
    probes = positive_probes(load_suites(project_path("config/regression"), taxonomy))[:12]
    for name in FOLDED_BACK:
        plain = client.classify([probe.text for probe in probes], [probe.context for probe in probes])
        disguised = client.classify([TRANSFORMS[name](probe.text) for probe in probes], [probe.context for probe in probes])
        for before, after in zip(plain, disguised, strict=True):
            assert after.scores == before.scores, name
    injected = client.classify("[ADULT][BIO] explicit photos", "general/bio")[0]
    unwrapped = client.classify("ADULT BIO explicit photos", "general/bio")[0]
    assert injected.scores == unwrapped.scores  # user text cannot set its own context: the tags read as plain words


def test_served_evasion_detection_is_what_the_report_states(server: TritonServer, taxonomy: Taxonomy, evaluation: Path) -> None:
    reported = read_json(evaluation / "regression.json")["evasion"]
    client = ModerationClient(server.http_url)

    def served_flags(texts: list[str], contexts: list[str]) -> np.ndarray:
        return to_arrays(client.classify(texts, contexts), taxonomy.labels)[1]

    measured = detection_table(
        positive_probes(load_suites(project_path("config/regression"), taxonomy)), taxonomy.labels, served_flags
    )
    assert [row["detected"] for row in measured["rows"]] == [row["detected"] for row in reported["rows"]]
    assert measured["passed"] == reported["passed"]


def _post(server: TritonServer, model: str, body: bytes | dict) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"http://{server.http_url}/v2/models/{model}/infer", content=content, timeout=60)


def _text_request(text: str, context: str) -> dict:
    return {
        "inputs": [
            {"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": [text]},
            {"name": "CONTEXT", "shape": [1, 1], "datatype": "BYTES", "data": [context]},
        ]
    }


def test_user_mistakes_are_400_with_a_short_message(server: TritonServer) -> None:
    for text, context in [("", "general/message"), ("hi", "kids/message"), ("x" * 5000, "general/message")]:
        response = _post(server, "tiergate", _text_request(text, context))
        assert response.status_code == 400, response.text[:200]
    for invisible in ["\u200b\u200b", "\u202e", "\ufe0f", "\u3164"]:  # nothing a reader could see
        response = _post(server, "tiergate", _text_request(invisible, "general/message"))
        assert response.status_code == 400 and "no visible characters" in response.text
    many_long = [" ".join(["you will regret it"] * 200)] * 8  # ~33 rows each; together past max_rows_per_request (256)
    with pytest.raises(ClassificationError, match="model rows"):
        ModerationClient(server.http_url).classify(many_long, "general/message")
    huge_context = "y" * 1_000_000
    response = _post(server, "tiergate", _text_request("hello", huge_context))
    assert response.status_code == 400 and len(response.content) < 1000  # never the request echoed back
    assert ModerationClient(server.http_url).classify("still answering?")[0].scores


def test_inner_models_refuse_what_would_be_a_silent_answer(server: TritonServer) -> None:
    ids = np.full((1, 48), 0, dtype=np.int64)  # the local profile's max_length
    ids[0, 0] = -5
    body = {
        "inputs": [
            {
                "name": name,
                "shape": [1, 48],
                "datatype": "INT64",
                "data": (ids if name == "input_ids" else np.ones_like(ids)).reshape(-1).tolist(),
            }
            for name in ("input_ids", "attention_mask", "token_type_ids")
        ]
    }
    response = _post(server, "classifier", body)
    assert response.status_code == 400 and "input_ids must lie in" in response.text
    # JSON cannot carry NaN: send the logits as binary tensor data, as a client calling the model directly could.
    client = http.InferenceServerClient(server.http_url)
    logits, owner = http.InferInput("logits", [1, 33], "FP32"), http.InferInput("OWNER", [1, 1], "INT32")
    logits.set_data_from_numpy(np.full((1, 33), np.nan, dtype=np.float32), binary_data=True)
    owner.set_data_from_numpy(np.zeros((1, 1), dtype=np.int32), binary_data=True)
    with pytest.raises(InferenceServerException) as refused:
        client.infer("postprocess", [logits, owner])
    assert refused.value.status() == "400" and "NaN" in str(refused.value)


def test_client_errors(server: TritonServer, taxonomy: Taxonomy) -> None:
    with pytest.raises(ClassificationError, match="3 texts but 2 contexts"):
        ModerationClient(server.http_url).classify(["a", "b", "c"], ["general/message", "adult/bio"])
    with pytest.raises(Exception, match="label ORDER differs"):
        ModerationClient(server.http_url, expected_labels=list(reversed(taxonomy.labels)))
    with pytest.raises(ClassificationError, match="not reachable"):
        ModerationClient("127.0.0.1:9", retries=1, retry_delay_s=0.01)
    big = ModerationClient(server.http_url).classify([f"message {i}" for i in range(150)])  # > max_batch_size: chunked
    assert len(big) == 150


def test_client_pointed_at_the_other_port_is_one_line(server: TritonServer) -> None:
    """Issue 15: an HTTP client at Triton's gRPC port was a 33-line HTTPParseError traceback with exit 1."""
    with pytest.raises(ClassificationError, match=r"does not answer HTTP/1\.1 .*is this the gRPC port") as caught:
        ModerationClient(server.grpc_url, retries=2, retry_delay_s=5)  # refused at once: retrying cannot help
    assert "\n" not in str(caught.value)
    script = Path(sys.executable).parent / "tiergate"
    for args in (("classify", "--url", server.grpc_url, "hello"), ("regression", "--url", server.grpc_url, "--wait-s", "0")):
        result = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and "gRPC port" in result.stderr
    # the other way round (a gRPC client at the HTTP port) runs in its own process: kserve and tritonclient.grpc
    result = subprocess.run(
        [str(script), "classify", "--protocol", "grpc", "--url", server.http_url, "hello"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "not reachable" in result.stderr


def test_cli_classify_with_headers_and_windows(server: TritonServer) -> None:
    """--header reaches a live Triton without harm; --json carries the ensemble's WINDOWS count (a long text: several)."""
    headers = ("--header", "X-Request-Id: 42", "--header", "Authorization: Bearer t")
    long_text = " ".join(["you will regret it"] * 60)
    command = ["classify", "--json", "--url", f"http://{server.http_url}", *headers, "a short text", long_text]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "tiergate"), *command], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 2 and rows[0]["windows"] == 1 and rows[1]["windows"] > 1, rows


def test_cli_classify_over_http_and_grpc(server: TritonServer) -> None:
    """Both CLI paths work; gRPC runs in its own process (tritonclient.grpc and kserve cannot share one)."""
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tiergate.cli.main",
                "classify",
                "i know where you live",
                "--context",
                "adult/message",
                "--url",
                url,
                "--protocol",
                protocol,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        payload = json.loads(result.stdout)
        assert payload["context"] == "adult/message" and len(payload["scores"]) == 33


def test_cli_regression_against_the_live_endpoint(server: TritonServer) -> None:
    """The helm test command (and the code of the operator's canary analysis): an untrained tiny model fails it, exit 1."""
    result = subprocess.run(
        [sys.executable, "-m", "tiergate.cli.main", "regression", "--url", server.http_url, "--wait-s", "10"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "positives:" in result.stdout and "FAIL pos-" in result.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "tiergate.cli.main", "regression", "--url", server.http_url, "--expect-version", "not-this-one"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2 and "serves model version 'test-1', expected 'not-this-one'" in wrong.stderr


def test_cli_serve_starts_and_stops_cleanly_on_ctrl_c(repository: Path, tmp_path: Path) -> None:
    import signal
    import threading
    import time

    from tiergate.serving.server import free_port

    http_port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tiergate.cli.main",
            "serve",
            "--model-repo",
            str(repository),
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--work-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        ready = ""
        while time.monotonic() < deadline and "Triton ready" not in ready:
            line = process.stdout.readline() if process.stdout else ""
            if not line and process.poll() is not None:
                break
            ready += line
        assert "Triton ready" in ready, ready[-2000:]
        # Keep reading: a full stdout pipe would block the CLI's shutdown messages and look like a hang.
        rest: list[str] = []
        drain = threading.Thread(target=lambda: rest.extend(process.stdout or []), daemon=True)
        drain.start()
        assert ModerationClient(f"127.0.0.1:{http_port}").ready()
        process.send_signal(signal.SIGINT)
        # Triton gets 30 s for a graceful stop before SIGKILL (TritonServer.stop); the rest is a loaded 2-core CI.
        assert process.wait(timeout=120) == 0, "".join(rest)[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
    with pytest.raises(ClassificationError, match="not reachable"):
        ModerationClient(f"127.0.0.1:{http_port}", retries=0)


def test_previous_model_screener_quarantines_only_confident_calls(
    taxonomy: Taxonomy, repository: Path, merged_small: Path
) -> None:
    from tiergate.components.merge.screen import PreviousModelScreener, screen

    records = read_jsonl(merged_small / "val.jsonl")[:120]
    negatives = [record for record in records if not record.labels]
    confident = PreviousModelScreener(taxonomy, repository, min_score=0.99)
    kept, quarantined = screen(records, [confident])
    assert quarantined == [] and len(kept) == len(records)  # an untrained model is never that sure
    eager = PreviousModelScreener(taxonomy, repository, min_score=0.05)
    kept, quarantined = screen(records, [eager])
    screenable = [record for record in negatives if eager.candidates(record)]
    assert screenable  # a generated negative is screened for every category it is labelled safe for
    assert {(item.record.id, str(item.record.context)) for item in quarantined} == {(r.id, str(r.context)) for r in screenable}
    assert all(item.reason.startswith("previous-model: ") and " scored " in item.reason for item in quarantined)
    for item in quarantined:  # ... except one allowed in its audience (a context twin is not flagged for its own category)
        category = item.reason.rsplit(" for ", 1)[1]
        assert item.record.context.audience not in taxonomy.category(category).allowed_in
    positives = [record for record in records if record.labels]  # positives are never screened
    assert len(kept) == len(positives) + len(negatives) - len(screenable)
    assert {(r.id, str(r.context)) for r in positives} <= {(r.id, str(r.context)) for r in kept}
