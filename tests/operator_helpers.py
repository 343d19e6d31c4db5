"""What the operator tests share: the settings a test operator runs with (local gate policy, the
packaged regression suites, the canary called at the URL KServe reports)."""

from __future__ import annotations

from typing import Any

from tiergate.gate import configured_policy
from tiergate.paths import project_path
from tiergate.profiles import PublishSettings, load_profile
from tiergate.regression import load_suites
from tiergate.serving.operator.controller import Settings
from tiergate.taxonomy import Taxonomy


def operator_settings(namespace: str, store: PublishSettings, taxonomy: Taxonomy, identity: str, **overrides: Any) -> Settings:
    return Settings(
        namespace=namespace,
        store=store,
        policy=configured_policy(taxonomy, load_profile("local")),
        taxonomy=taxonomy,
        suites=load_suites(project_path("config/regression"), taxonomy),
        identity=identity,
        analysis_address="status",
        **overrides,
    )
