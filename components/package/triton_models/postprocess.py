"""Triton python-backend model `postprocess`: row logits → per-text scores, flags, routing tier (tiergate.inference).

Rows (windows x readings of each text, see the tokenizer) are pooled per text by OWNER, then
thresholded. Logits that are not finite, or rows that do not map onto the texts, are an
INVALID_ARG error: never a silent "nothing flagged".
"""

import json
import os
from pathlib import Path

import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

from tiergate.artifacts import THRESHOLDS_FILE
from tiergate.errors import InputDataError, LabelMismatchError
from tiergate.inference import Postprocessor, ThresholdSet
from tiergate.preprocessing import pool_rows
from tiergate.triton_params import json_parameter, string_parameters


class TritonPythonModel:
    def initialize(self, args):
        parameters = string_parameters(json.loads(args["model_config"]))
        here = Path(args["model_repository"]) / args["model_version"]
        thresholds = ThresholdSet.load(here / THRESHOLDS_FILE)
        self.postprocessor = Postprocessor(thresholds)
        # The Helm chart can switch optional categories off per deployment through the environment.
        override = os.environ.get("TIERGATE_OPTIONAL_DISABLED")
        disabled = set(json.loads(override) if override else json_parameter(parameters, "optional_disabled", "[]"))
        self.enabled_optional = [name for name in thresholds.optional if name not in disabled]

    def _decide(self, request):
        logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy()
        owners = pb_utils.get_input_tensor_by_name(request, "OWNER").as_numpy().reshape(-1)
        texts = int(owners.max()) + 1 if owners.size else 0
        return self.postprocessor.decide(pool_rows(logits, owners, texts), self.enabled_optional)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                decisions = self._decide(request)
            except (InputDataError, LabelMismatchError) as error:
                failure = pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=failure))
                continue
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("SCORES", decisions.scores),
                        pb_utils.Tensor("FLAGS", decisions.flags),
                        pb_utils.Tensor("MAX_TIER", decisions.max_tier.reshape(-1, 1)),
                    ]
                )
            )
        return responses
