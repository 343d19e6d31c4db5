"""Triton python-backend model `postprocess`: logits → scores, flags, routing tier (tiergate.inference.Postprocessor)."""

import json
import os
from pathlib import Path

import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

from tiergate.artifacts import THRESHOLDS_FILE
from tiergate.inference import Postprocessor, ThresholdSet
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

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy()
            decisions = self.postprocessor.decide(logits, self.enabled_optional)
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
