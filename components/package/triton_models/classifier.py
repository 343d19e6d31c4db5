"""Triton python-backend model `classifier` (LOCAL variant only): onnxruntime on the same ONNX file.

The tritonserver in the nvidia-pytriton wheel has no onnxruntime backend; production uses
`platform: onnxruntime_onnx` on GPU with this exact file instead. Called directly (it is an inner
model, but Triton cannot make one model private), it refuses token ids outside the vocabulary:
onnxruntime's Gather would otherwise wrap a negative id silently into another token.
"""

from pathlib import Path

import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

from tiergate.artifacts import CLASSIFIER_FILE
from tiergate.errors import InputDataError
from tiergate.inference import OnnxClassifier, check_token_ids


class TritonPythonModel:
    def initialize(self, args):
        here = Path(args["model_repository"]) / args["model_version"]
        self.classifier = OnnxClassifier(here / CLASSIFIER_FILE)

    def execute(self, requests):
        responses = []
        for request in requests:
            batch = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.classifier.input_names}
            try:
                check_token_ids(batch, self.classifier.vocabulary_size)
            except InputDataError as error:
                failure = pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=failure))
                continue
            logits = self.classifier.logits(batch)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("logits", logits)]))
        return responses
