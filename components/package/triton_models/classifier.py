"""Triton python-backend model `classifier` (LOCAL variant only): onnxruntime on the same ONNX file.

The tritonserver in the nvidia-pytriton wheel has no onnxruntime backend; production uses
`platform: onnxruntime_onnx` on GPU with this exact file instead.
"""

from pathlib import Path

import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

from tiergate.artifacts import CLASSIFIER_FILE
from tiergate.inference import OnnxClassifier


class TritonPythonModel:
    def initialize(self, args):
        here = Path(args["model_repository"]) / args["model_version"]
        self.classifier = OnnxClassifier(here / CLASSIFIER_FILE)

    def execute(self, requests):
        responses = []
        for request in requests:
            batch = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.classifier.input_names}
            logits = self.classifier.logits(batch)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("logits", logits)]))
        return responses
