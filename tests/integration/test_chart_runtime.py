"""The chart's ServingRuntime container, run as rendered: verify -> gateway -> a real local Triton.

What a pod would run, with only what this machine needs changed: free ports instead of the fixed
ones, the repository instead of /mnt/models, the nvidia-pytriton `tritonserver` (plus its backend
folder) instead of the image's, and `$(TIERGATE_ADMIN_KEY)` expanded as the kubelet does. Then
the pod's contract is checked from outside: the probe path turns 200, a text is classified
through the gateway port, admin routes need the header (at the gateway and at Triton itself),
Triton's HTTP and gRPC listen on loopback only while the gateway and metrics listen on all
interfaces, an oversized body gets 413, and SIGTERM stops the whole chain.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helm_python import Chart

from tests.conftest import TINY_MODEL_VERSION
from tests.helm_helpers import operator_inferenceservice
from tiergate.client import ModerationClient
from tiergate.paths import PROJECT_ROOT
from tiergate.serving.gateway import ADMIN_HEADER
from tiergate.serving.server import TritonInstall, TritonServer, free_port
from tiergate.taxonomy import Taxonomy

pytestmark = pytest.mark.slow

CHART = PROJECT_ROOT / "charts" / "tiergate-serving"
KEY = "chart-admin-key-0123456789abcdef"
MAX_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def repository(tiny_repository: Path) -> Path:
    return tiny_repository


def listening(port: int) -> set[str]:
    """Addresses with a socket in LISTEN on this port (/proc/net/tcp and tcp6; IPv4-mapped shown as IPv4)."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(bytes.fromhex(address_hex[i : i + 8])[::-1] for i in range(0, len(address_hex), 8))
            address = ipaddress.ip_address(raw)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            found.add(str(address))
    return found


class Pod:
    """The rendered container's command + args as one local process group."""

    def __init__(self, repository: Path, work: Path):
        shutil.copytree(repository, work / "models")  # Triton's python backend writes __pycache__ beside model.py
        manifest = json.loads((work / "models" / "repository.json").read_text())
        digest = manifest["digest"]
        model = {
            "name": "tiergate",
            "version": TINY_MODEL_VERSION,
            "storageUri": f"s3://m/tiergate/{TINY_MODEL_VERSION}/{digest}",
            "digest": digest,
            "gateDigest": manifest["gate_digest"],
        }
        health = {"periodSeconds": 2, "timeoutSeconds": 10, "failureThreshold": 3}
        values = {"model": model, "serving": {"maxRequestBytes": MAX_BYTES, "health": health}}
        rendered = Chart.load(str(CHART)).render(values, name="tiergate", namespace="moderation")
        spec = yaml.safe_load(rendered["tiergate-serving/templates/servingruntime.yaml"])["spec"]
        self.runtime: dict[str, Any] = spec["containers"][0]
        self.annotations: dict[str, str] = spec["annotations"]
        # The predictor's env is the operator's InferenceService's, made from the chart's ModerationModel.
        isvc = operator_inferenceservice(
            yaml.safe_load(rendered["tiergate-serving/templates/moderationmodel.yaml"]), "moderation"
        )
        install = TritonInstall.locate()
        env = TritonServer(work / "models", work_dir=work)._environment(install)  # libpython, PYTHONPATH for the stubs
        for variable in [*self.runtime["env"], *isvc["spec"]["predictor"]["model"]["env"]]:
            if "secretKeyRef" in variable.get("valueFrom", {}):
                env[variable["name"]] = KEY  # the Secret
            elif variable["name"] not in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "HF_HOME"):  # /scratch is the pod's
                env[variable["name"]] = variable["value"]
        self.ports = {name: free_port() for name in ("--listen", "--upstream", "--grpc-port", "--metrics-port")}
        replace = {
            "--listen": f"0.0.0.0:{self.ports['--listen']}",
            "--upstream": f"127.0.0.1:{self.ports['--upstream']}",
            "--http-port": str(self.ports["--upstream"]),
            "--grpc-port": str(self.ports["--grpc-port"]),
            "--metrics-port": str(self.ports["--metrics-port"]),
        }
        argv: list[str] = []
        for arg in [*self.runtime["command"], *self.runtime["args"]]:
            name, equals, _ = arg.partition("=")
            if equals and name in replace:
                arg = f"{name}={replace[name]}"
            elif argv and argv[-1] in replace and not arg.startswith("-"):
                arg = replace[argv[-1]]
            arg = arg.replace("/mnt/models", str(work / "models"))
            argv.append(re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda match: env[match[1]], arg))
        triton = argv.index("tritonserver")
        argv[triton : triton + 1] = [str(install.binary), f"--backend-directory={install.backend_directory(work)}"]
        assert argv[0] == "tiergate"
        self.log = work / "pod.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tiergate.cli.main", *argv[1:]],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports['--listen']}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout_s: float = 300) -> None:
        """What the startup and readiness probes do: GET the probe path until it answers 200."""
        probe = self.runtime["startupProbe"]["httpGet"]["path"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the container exited with {self.process.returncode}:\n{self.output()}"
            try:
                if httpx.get(self.base + probe, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        pytest.fail(f"{probe} not 200 after {timeout_s:.0f}s:\n{self.output()}")

    def stop(self, timeout_s: float = 60) -> int | None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)  # what the kubelet sends to the container's PID 1
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return None


@pytest.fixture(scope="module")
def pod(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    pod = Pod(repository, tmp_path_factory.mktemp("pod"))
    try:
        pod.wait_ready()
        yield pod
    finally:
        pod.stop()


def test_the_rendered_container_serves_through_the_gateway(pod: Pod, taxonomy: Taxonomy) -> None:
    assert httpx.get(pod.base + pod.runtime["livenessProbe"]["httpGet"]["path"]).status_code == 200
    with ModerationClient(pod.base.removeprefix("http://"), expected_labels=taxonomy.labels) as client:
        result = client.classify("i know where you live", "general/message")[0]
        assert client.model_version == TINY_MODEL_VERSION and len(result.scores) == len(taxonomy.labels)
    too_big = httpx.post(pod.base + "/v2/models/tiergate/infer", content=b"x" * (MAX_BYTES + 1))
    assert too_big.status_code == 413


def test_admin_routes_need_the_key_from_the_secret(pod: Pod) -> None:
    assert httpx.get(pod.base + "/v2/models/stats").status_code == 403
    assert httpx.get(pod.base + "/v2/models/stats", headers={ADMIN_HEADER: "wrong"}).status_code == 403
    assert httpx.get(pod.base + "/v2/models/stats", headers={ADMIN_HEADER: KEY}).status_code == 200
    assert httpx.get(pod.base + "/v2/models/classifier/config").status_code == 403  # an inner model
    # Triton checks the same key itself ($(TIERGATE_ADMIN_KEY) expanded into its restricted-API flags).
    triton = f"http://127.0.0.1:{pod.ports['--upstream']}"
    assert httpx.get(triton + "/v2/models/stats").status_code != 200
    assert httpx.get(triton + "/v2/models/stats", headers={ADMIN_HEADER: KEY}).status_code == 200


def test_only_the_gateway_and_metrics_listen_beyond_loopback(pod: Pod) -> None:
    assert listening(pod.ports["--listen"]) == {"0.0.0.0"}
    assert listening(pod.ports["--metrics-port"]) == {"0.0.0.0"}
    assert listening(pod.ports["--upstream"]) == {"127.0.0.1"}  # Triton HTTP
    grpc = [line for line in pod.output().splitlines() if "GRPCInferenceService" in line]
    assert listening(pod.ports["--grpc-port"]) == {"127.0.0.1"}, grpc  # Triton gRPC
    assert pod.annotations["prometheus.kserve.io/port"] == "8002"  # the chart's metrics port, here a free one
    metrics = httpx.get(f"http://127.0.0.1:{pod.ports['--metrics-port']}{pod.annotations['prometheus.kserve.io/path']}")
    assert metrics.status_code == 200 and "nv_inference_request_success" in metrics.text


def test_sigterm_stops_the_whole_chain(pod: Pod) -> None:
    """Last in this module: it stops the shared pod."""
    code = pod.stop(timeout_s=60)
    assert code is not None, f"the chain did not stop within 60 s:\n{pod.output()}"
    assert not listening(pod.ports["--upstream"]) and not listening(pod.ports["--grpc-port"])
    assert not listening(pod.ports["--listen"])
