"""Serving benchmark: same texts, same machine, one run, three ways of classifying.

(a) the local Triton ensemble (dynamic batching) under 1, 8 and 32 concurrent clients,
(b) onnxruntime in-process (the exported fp16 model, tiergate.inference),
(c) a plain `transformers` text-classification pipeline on the PyTorch checkpoint.
Prints throughput, p50/p99 latency per request and the ratios against (c).

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

from tiergate.artifacts import ONNX_FILES, TEST_SPLIT, THRESHOLDS_FILE, TOKENIZER_DIR
from tiergate.client import ModerationClient
from tiergate.formatting import format_input
from tiergate.inference import ModerationPipeline, ThresholdSet
from tiergate.pipelines.runner import newest
from tiergate.records import read_jsonl
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/latest"))
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()

    run = args.run.resolve()
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


if __name__ == "__main__":
    main()
