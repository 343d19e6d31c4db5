"""Triton python-backend model `tokenizer`: raw text + context → model rows (tiergate.inference.Preprocessor).

A request of texts becomes rows: every window of every reading of each text (tiergate.preprocessing),
with OWNER naming each row's text for the postprocess to pool, and WINDOWS / TRUNCATED per text.
Every user mistake (invalid UTF-8, empty or invisible-only text, unknown context, a text over
the size limit or longer than the windows read, a request needing more than `max_rows` rows)
is an INVALID_ARG error (HTTP 400) for that request only, quoting at most a short prefix of
what was sent; the model and the server keep serving.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

from tiergate.artifacts import TOKENIZER_DIR
from tiergate.errors import InputDataError
from tiergate.inference import Preprocessor
from tiergate.normalization import normalize_for_model
from tiergate.preprocessing import PREPROCESSING_VERSION, Windowing
from tiergate.records import Context
from tiergate.triton_params import json_parameter, string_parameters


class TritonPythonModel:
    def initialize(self, args):
        parameters = string_parameters(json.loads(args["model_config"]))
        if parameters.get("preprocessing_version") != PREPROCESSING_VERSION:
            raise pb_utils.TritonModelException(
                f"this repository was judged with preprocessing version {parameters.get('preprocessing_version', '1')}, "
                f"the installed tiergate reads texts with version {PREPROCESSING_VERSION}; serve it with the matching image"
            )
        here = Path(args["model_repository"]) / args["model_version"]
        self.input_names = json_parameter(parameters, "input_names")
        windowing = Windowing(int(parameters["window_stride"]), int(parameters["max_windows"]))
        self.preprocessor = Preprocessor(here / TOKENIZER_DIR, int(parameters["max_length"]), self.input_names, windowing)
        self.max_chars = int(parameters["max_text_chars"])
        self.max_rows = int(parameters["max_rows"])
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
            if not normalize_for_model(text):
                raise InputDataError(f"item {index}: text has no visible characters (only invisible or control characters)")
            if len(text) > self.max_chars:
                raise InputDataError(f"item {index}: text has {len(text)} characters; the limit is {self.max_chars}")
            try:
                parsed.append(Context.parse(context, self.audiences, self.surfaces))
            except InputDataError as error:
                raise InputDataError(f"item {index}: {error}") from None  # quotes at most a short prefix
            decoded.append(text)
        return decoded, parsed

    def _rows(self, request):
        texts, contexts = self._decode(request)
        rows = self.preprocessor.encode(texts, contexts)
        unread = np.flatnonzero(rows.truncated)
        if len(unread):
            limit = self.preprocessor.encoder.windowing.max_windows
            raise InputDataError(
                f"item {int(unread[0])}: text is longer than the {limit} windows the model reads; send it in parts"
            )
        if len(rows.owners) > self.max_rows:
            raise InputDataError(
                f"the request needs {len(rows.owners)} model rows (windows x readings of its texts); the limit is "
                f"{self.max_rows}: send fewer or shorter texts per request"
            )
        return rows

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                rows = self._rows(request)
            except InputDataError as error:
                failure = pb_utils.TritonError(str(error)[:500], pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=failure))
                continue
            outputs = [pb_utils.Tensor(name, rows.inputs[name]) for name in self.input_names]
            outputs.append(pb_utils.Tensor("OWNER", rows.owners.reshape(-1, 1)))
            outputs.append(pb_utils.Tensor("WINDOWS", rows.rows_per_text.reshape(-1, 1)))
            outputs.append(pb_utils.Tensor("TRUNCATED", rows.truncated.reshape(-1, 1)))
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
