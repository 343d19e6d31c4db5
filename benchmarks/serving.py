"""Serving benchmark: same texts, same machine, one run, three ways of classifying.

(a) the local Triton ensemble (dynamic batching) under 1, 8 and 32 concurrent clients,
(b) onnxruntime in-process (the exported fp16 model, tiergate.inference),
(c) a plain `transformers` text-classification pipeline on the PyTorch checkpoint.
Prints throughput, p50/p99 latency per request and the ratios against (c).

Then the cost of reading texts the way issue 15 asks (normalisation, leetspeak reading, windows):
preprocessing alone, old path (prefix + raw text, truncated) against the served one, on short and
on long texts; and the Triton ensemble on the long texts cut to their first window's words (what
truncation used to read, one row each) against the whole texts (every window).

    python benchmarks/serving.py --run runs/latest [--requests 400] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tiergate.artifacts import ONNX_FILES, REPOSITORY_MANIFEST, TEST_SPLIT, THRESHOLDS_FILE, TOKENIZER_DIR
from tiergate.client import ModerationClient
from tiergate.formatting import context_prefix, format_input
from tiergate.inference import ModerationPipeline, ThresholdSet
from tiergate.pipelines.runner import newest
from tiergate.preprocessing import InputEncoder
from tiergate.records import Context, read_jsonl
from tiergate.serving.server import TritonServer


def _require(root: Path, pattern: str) -> Path:
    found = newest(root, pattern)
    if found is None:
        raise SystemExit(f"no {pattern} under {root}: run `make run` first")
    return found


def _summary(name: str, latencies: list[float], elapsed: float, count: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "name": name,
        "throughput": count / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def bench_triton(url: str, texts: list[str], contexts: list[str], concurrency: int) -> dict[str, Any]:
    local = threading.local()  # tritonclient.http is gevent-based: one client per thread, made in that thread

    def one(index: int) -> float:
        if not hasattr(local, "client"):
            local.client = ModerationClient(url)
        start = time.perf_counter()
        local.client.classify(texts[index], contexts[index])
        return time.perf_counter() - start

    one(0)  # warm-up
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(len(texts))))
    return _summary(f"triton ensemble, {concurrency} concurrent clients", latencies, time.perf_counter() - started, len(texts))


def bench_sequential(name: str, run: Any, items: list[Any]) -> dict[str, Any]:
    run(items[0])  # warm-up
    latencies = []
    started = time.perf_counter()
    for item in items:
        start = time.perf_counter()
        run(item)
        latencies.append(time.perf_counter() - start)
    return _summary(name, latencies, time.perf_counter() - started, len(items))


FIRST_WINDOW_WORDS = 25  # about what one 48-token window after the context prefix reads of English


def bench_preprocessing(encoder: InputEncoder, texts: list[str], contexts: list[Context]) -> list[dict[str, Any]]:
    """Texts/s of the old input path (prefix + raw text, truncated) and of the served one, same batch of 32."""
    tokenizer, max_length = encoder.tokenizer, encoder.max_length

    def old(batch: slice) -> None:
        raw = [f"{context_prefix(c)} {t.strip()}" for t, c in zip(texts[batch], contexts[batch], strict=True)]
        tokenizer(raw, truncation=True, max_length=max_length, padding="max_length", return_tensors="np")

    def new(batch: slice) -> None:
        encoder.encode_rows(texts[batch], contexts[batch])

    batches = [slice(start, start + 32) for start in range(0, len(texts), 32)]
    rows = []
    for name, run in (("raw text, first window only (before)", old), ("normalised, readings, every window", new)):
        started = time.perf_counter()
        for batch in batches:
            run(batch)
        elapsed = time.perf_counter() - started
        rows.append({"name": f"preprocessing: {name}", "throughput": len(texts) / elapsed})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/latest"))
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--long-requests", type=int, default=100, help="long texts for the windowing cost")
    args = parser.parse_args()

    run = args.run.resolve()
    if not (run / "model_repository" / REPOSITORY_MANIFEST).is_file():  # before any timing, and no triton-bench folder
        sys.exit(f"{args.run}: no model_repository (the gate did not promote it); nothing to serve")
    kfp = run / "kfp"
    export, checkpoint, data = (
        _require(kfp, pattern) for pattern in ("*/export/onnx_model", "*/train-3/checkpoint", "*/merge/merged")
    )
    records = (read_jsonl(data / TEST_SPLIT) * 10)[: args.requests]
    texts, contexts = [r.text for r in records], [str(r.context) for r in records]

    results = []
    from transformers import pipeline as hf_pipeline

    classifier = hf_pipeline("text-classification", model=str(checkpoint), top_k=None, device=-1)
    formatted = [format_input(r.text, r.context) for r in records]
    results.append(bench_sequential("transformers pipeline (PyTorch, 1 text per call)", classifier, formatted))

    in_process = ModerationPipeline(export / ONNX_FILES["fp16"], export / TOKENIZER_DIR, ThresholdSet.load(run / THRESHOLDS_FILE))
    results.append(
        bench_sequential(
            "onnxruntime in-process (fp16, 1 text per call)", lambda r: in_process.classify([r.text], [r.context]), records
        )
    )
    with TritonServer(run / "model_repository", run / "triton-bench") as server:
        for concurrency in args.concurrency:
            results.append(bench_triton(server.http_url, texts, contexts, concurrency))

    base = results[0]["throughput"]
    print(f"{len(records)} requests of one text each; CPU; model {export.parent.parent.name}")
    print(f"{'method':<52} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'x vs transformers':>18}")
    for row in results:
        print(
            f"{row['name']:<52} {row['throughput']:8.1f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f} "
            f"{row['throughput'] / base:18.2f}"
        )
    print_reading_costs(run, records, in_process, args.long_requests)


def print_reading_costs(run: Path, records: list[Any], in_process: ModerationPipeline, count: int) -> None:
    """Issue 15's cost: normalisation + readings + windows against the old path, short and long texts, one run."""
    encoder = in_process.preprocessor.encoder
    short_texts, short_contexts = [r.text for r in records], [r.context for r in records]
    long_records = [records[i : i + 8] for i in range(0, 8 * count, 8)]
    long_texts = [" ".join(r.text for r in group) for group in long_records if group]
    long_contexts = [group[0].context for group in long_records if group]
    print(f"\ncost of reading texts whole (issue 15); long texts: {len(long_texts)} of 8 test texts each")
    print(f"{'method':<60} {'texts/s':>8} {'x vs before':>12}")
    for label, texts, contexts in (("short", short_texts, short_contexts), ("long", long_texts, long_contexts)):
        before, after = bench_preprocessing(encoder, texts, contexts)
        for row in (before, after):
            ratio = row["throughput"] / before["throughput"]
            print(f"{row['name'] + ', ' + label:<60} {row['throughput']:8.1f} {ratio:12.2f}")
    first_windows = [" ".join(text.split()[:FIRST_WINDOW_WORDS]) for text in long_texts]
    served = []
    with TritonServer(run / "model_repository", run / "triton-bench-windows") as server:
        for name, texts in (("first window only (before)", first_windows), ("every window", long_texts)):
            row = bench_triton(server.http_url, texts, [str(c) for c in long_contexts], 8)
            served.append({**row, "name": f"triton, long texts, 8 clients, {name}"})
    for row in served:
        print(f"{row['name']:<60} {row['throughput']:8.1f} {row['throughput'] / served[0]['throughput']:12.2f}")


if __name__ == "__main__":
    main()
