"""Triton python-backend model `tokenizer`: raw text + context → token ids (tiergate.inference.Preprocessor).

Bad input (invalid UTF-8, empty text, unknown context, text over the size limit) gets an error
response for that request only; the model and the server keep serving.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

from tiergate.artifacts import TOKENIZER_DIR
from tiergate.errors import InputDataError
from tiergate.inference import Preprocessor
from tiergate.records import Context
from tiergate.triton_params import json_parameter, string_parameters


class TritonPythonModel:
    def initialize(self, args):
        parameters = string_parameters(json.loads(args["model_config"]))
        here = Path(args["model_repository"]) / args["model_version"]
        self.input_names = json_parameter(parameters, "input_names")
        self.preprocessor = Preprocessor(here / TOKENIZER_DIR, int(parameters["max_length"]), self.input_names)
        self.max_chars = int(parameters["max_text_chars"])
        self.audiences = json_parameter(parameters, "audiences")
        self.surfaces = json_parameter(parameters, "surfaces")

    def _decode(self, request):
        texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
        contexts = pb_utils.get_input_tensor_by_name(request, "CONTEXT").as_numpy().reshape(-1)
        if len(contexts) != len(texts):
            raise InputDataError(f"{len(texts)} texts but {len(contexts)} contexts")
        decoded, parsed = [], []
        for index, (raw_text, raw_context) in enumerate(zip(texts, contexts, strict=True)):
            try:
                text = raw_text.decode("utf-8") if isinstance(raw_text, bytes) else str(raw_text)
                context = raw_context.decode("utf-8") if isinstance(raw_context, bytes) else str(raw_context)
            except UnicodeDecodeError:
                raise InputDataError(f"item {index}: text or context is not valid UTF-8") from None
            if not text.strip():
                raise InputDataError(f"item {index}: text is empty or whitespace")
            if len(text) > self.max_chars:
                raise InputDataError(f"item {index}: text has {len(text)} characters; the limit is {self.max_chars}")
            decoded.append(text)
            parsed.append(Context.parse(context, self.audiences, self.surfaces))
        return decoded, parsed

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                texts, contexts = self._decode(request)
                batch, truncated = self.preprocessor.encode(texts, contexts)
            except InputDataError as error:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error))))
                continue
            outputs = [pb_utils.Tensor(name, batch[name]) for name in self.input_names]
            outputs.append(pb_utils.Tensor("TRUNCATED", np.array(truncated, dtype=bool).reshape(-1, 1)))
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
