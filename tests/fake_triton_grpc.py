"""The gRPC side of tests/fake_triton.py, with the client scenarios that need it, run in a process of its own.

`tritonclient.grpc` and the KServe SDK register the same protobuf package and cannot share a
process, so tests/unit/test_client.py runs `python -m tests.fake_triton_grpc CERT_DIR` and reads
one JSON object from its stdout: what each scenario returned or raised, and the metadata the
server received.
"""

from __future__ import annotations

import asyncio
import json
import sys
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from tests.fake_triton import INGRESS_NAME, _bytes_elements, answer, make_certificates
from tiergate.client import AsyncModerationClient, ModerationClient
from tiergate.errors import ClassificationError

LABELS = ["threats", "spam", "profanity"]
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(bool): "BOOL", np.dtype(np.int32): "INT32"}


class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, max_batch_size: int = 4):
        self.max_batch_size = max_batch_size
        self.metadata: list[dict[str, str]] = []

    def _record(self, context: grpc.ServicerContext) -> None:
        self.metadata.append({key: str(value) for key, value in context.invocation_metadata()})

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record(context)
        return service_pb2.ServerReadyResponse(ready=True)

    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record(context)
        return service_pb2.ModelReadyResponse(ready=True)

    def ModelConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record(context)
        names = ("SCORES", "FLAGS", "MAX_TIER", "TRUNCATED", "WINDOWS")
        config = model_config_pb2.ModelConfig(
            name="tiergate",
            platform="ensemble",
            max_batch_size=self.max_batch_size,
            output=[model_config_pb2.ModelOutput(name=name) for name in names],
        )
        config.parameters["labels"].string_value = json.dumps(LABELS)
        config.parameters["contexts"].string_value = json.dumps(
            {"audiences": ["general", "adult"], "surfaces": ["message", "bio", "listing", "review"]}
        )
        config.parameters["model_version"].string_value = "fake-grpc-1"
        return service_pb2.ModelConfigResponse(config=config)

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record(context)
        names = [tensor.name for tensor in request.inputs]
        texts = [item.decode("utf-8") for item in _bytes_elements(request.raw_input_contents[names.index("TEXT")])]
        try:
            outputs = answer(LABELS, texts, windows=True)
        except ValueError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        response = service_pb2.ModelInferResponse(model_name="tiergate")
        for wanted in request.outputs:
            array = outputs[wanted.name]
            response.outputs.append(
                service_pb2.ModelInferResponse.InferOutputTensor(
                    name=wanted.name, datatype=DATATYPES[array.dtype], shape=list(array.shape)
                )
            )
            response.raw_output_contents.append(array.tobytes())
        return response


def serve(servicer: Servicer, credentials: grpc.ServerCredentials | None) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    address = "127.0.0.1:0"
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    server.start()
    return server, port


def attempt(function: Any) -> Any:
    try:
        return {"ok": function()}
    except ClassificationError as error:
        return {"error": str(error), "partial": len(error.partial)}


def main(folder: Path) -> dict[str, Any]:
    certificates = make_certificates(folder)
    headers = {"Host": INGRESS_NAME, "Authorization": "Bearer secret", "X-Tenant": "blue"}
    report: dict[str, Any] = {}

    plain = Servicer()
    server, port = serve(plain, None)
    with ModerationClient(f"127.0.0.1:{port}", "grpc", headers=headers, retries=0) as client:
        report["plain"] = attempt(lambda: [item.as_dict() for item in client.classify(["threats a", "spam " * 30, "c"])])
        report["refused"] = attempt(lambda: client.classify(["x"] * 5 + ["REFUSE this", "y"]))
        report["ready"] = client.ready()

    async def run_async() -> Any:
        async with AsyncModerationClient(f"127.0.0.1:{port}", "grpc", headers=headers, retries=0) as client:
            return [item.windows for item in await client.classify(["a" * 250] * 6)]

    report["async"] = attempt(lambda: asyncio.run(run_async()))
    report["metadata"] = plain.metadata
    server.stop(None)

    tls = Servicer()
    credentials = grpc.ssl_server_credentials([(certificates.key.read_bytes(), certificates.cert.read_bytes())])
    server, port = serve(tls, credentials)
    url = f"https://127.0.0.1:{port}"
    report["tls_untrusted"] = attempt(lambda: ModerationClient(url, "grpc", retries=0).model_version)
    report["tls_ca_file"] = attempt(lambda: ModerationClient(url, "grpc", ca_file=certificates.ca, retries=0).model_version)
    report["tls_host"] = attempt(
        lambda: ModerationClient(url, "grpc", ca_file=certificates.ca, headers={"Host": INGRESS_NAME}, retries=0).model_version
    )
    wrong = {"Host": "other.example.org"}
    report["tls_wrong_host"] = attempt(
        lambda: ModerationClient(url, "grpc", ca_file=certificates.ca, headers=wrong, retries=0).model_version
    )
    server.stop(None)
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
