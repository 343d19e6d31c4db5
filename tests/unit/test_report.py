"""The HTML report escapes what data sets put in it, and its templates refuse a missing key."""

from __future__ import annotations

import copy
from typing import Any

import jinja2
import numpy as np
import pytest

from tiergate.components.evaluate.metrics import evaluate_split
from tiergate.components.evaluate.regression import load_suites, run_suites
from tiergate.components.evaluate.report import html_view, markdown_view, render_html, render_markdown, templates
from tiergate.components.evaluate.thresholds import tune_thresholds
from tiergate.gate import Judged, decide, gate_policy
from tiergate.inference import Postprocessor, ThresholdSet
from tiergate.paths import project_path
from tiergate.profiles import load_profile
from tiergate.records import Context, Kind, Source, make_record
from tiergate.taxonomy import Taxonomy

HOSTILE = "<script>alert('x')</script>"
ESCAPED = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"


@pytest.fixture(scope="module")
def inputs(taxonomy: Taxonomy) -> dict[str, Any]:
    """Report inputs as the evaluate step builds them: tuned thresholds, test metrics, regression run, gate."""
    rng = np.random.default_rng(0)
    targets = rng.random((200, len(taxonomy.labels))) < 0.2
    scores = np.clip(np.where(targets, 0.8, 0.2) + rng.normal(0, 0.08, targets.shape), 0, 1).astype(np.float32)
    thresholds = tune_thresholds(taxonomy, scores, targets)
    table = ThresholdSet(
        taxonomy.labels, taxonomy.labels_sha256, thresholds["thresholds"], thresholds["tiers"], thresholds["optional"]
    )
    flags = Postprocessor(table).decide(np.log(scores / (1 - scores + 1e-9) + 1e-9)).flags
    source = Source(generator="t", model="t", prompt_id="p", category=None, kind=Kind.INNOCUOUS)
    records = [make_record(f"text {i}", Context(audience="general", surface="message"), [], source) for i in range(200)]
    metrics = evaluate_split(taxonomy, records, scores, flags, targets, thresholds, 5, 20, 0.95, 0, 10)

    def nothing_flagged(texts: list[str], contexts: list[Context]) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(texts), len(taxonomy.labels)), np.float32), np.zeros((len(texts), len(taxonomy.labels)), bool)

    suites = load_suites(project_path("config/regression"), taxonomy)
    regression = run_suites(suites, taxonomy, nothing_flagged)
    fields = {**dict.fromkeys(Judged.model_fields, "x"), "model_file": "model_fp16.onnx", "model_sha256": "ab" * 32}
    judged = Judged(**{**fields, "taxonomy_sha256": taxonomy.labels_sha256})
    policy = gate_policy(taxonomy, load_profile("production").evaluate, 5, suites)
    gate = decide(policy, metrics, regression, judged).as_json()
    return {"gate": gate, "metrics": metrics, "regression": regression, "thresholds": thresholds}


class RenamedTaxonomy:
    """The real taxonomy with one label renamed to something its validation would refuse."""

    def __init__(self, taxonomy: Taxonomy, old: str, new: str) -> None:
        self.taxonomy, self.old, self.new = taxonomy, old, new
        self.labels = [new if name == old else name for name in taxonomy.labels]
        self.tiers = taxonomy.tiers

    def tier_of(self, name: str) -> Any:
        return self.taxonomy.tier_of(self.old if name == self.new else name)


def hostile_inputs(taxonomy: Taxonomy, inputs: dict[str, Any]) -> tuple[RenamedTaxonomy, dict[str, Any]]:
    """`inputs` with a category, a context, a vector, a rule and the model file all named HOSTILE."""
    data = copy.deepcopy(inputs)
    old = taxonomy.labels[0]
    per_category = data["metrics"]["per_category"]
    data["metrics"]["per_category"] = {HOSTILE if name == old else name: entry for name, entry in per_category.items()}
    for rule in data["gate"]["rules"]:
        if rule.get("category") == old:
            rule["category"] = HOSTILE
    for section in ("search", "thresholds"):
        data["thresholds"][section][HOSTILE] = data["thresholds"][section].pop(old)
    data["metrics"]["contexts"][HOSTILE] = {"records": 1, "macro_f1": None, "micro_f1": 0.0}
    data["regression"]["suites"]["positives"]["vectors"][0]["text"] = HOSTILE
    data["gate"]["failures"][0]["rule"] = HOSTILE
    data["gate"]["judged"]["model_file"] = HOSTILE
    return RenamedTaxonomy(taxonomy, old, HOSTILE), data


def test_texts_and_names_from_data_are_escaped_in_the_html(taxonomy: Taxonomy, inputs: dict[str, Any]) -> None:
    renamed, data = hostile_inputs(taxonomy, inputs)
    page = render_html(renamed, data["gate"], data["metrics"], data["regression"], data["thresholds"], {}, {})  # type: ignore[arg-type]
    assert "<script" not in page
    # category table, context table, vector text, failing rule, model file
    assert page.count(ESCAPED) == 5
    assert f"<td>{ESCAPED}</td><td>T" in page  # the category row
    # The Markdown summary is not HTML: it keeps the text as written, as it always did.
    summary = render_markdown(renamed, data["gate"], data["metrics"], data["regression"], {})  # type: ignore[arg-type]
    assert f"`{HOSTILE}`" in summary


def test_a_key_missing_from_the_view_is_an_error_not_an_empty_cell(taxonomy: Taxonomy, inputs: dict[str, Any]) -> None:
    gate, metrics, regression = inputs["gate"], inputs["metrics"], inputs["regression"]
    view = html_view(taxonomy, gate, metrics, regression, inputs["thresholds"], {}, {})
    page = templates().get_template("report.html.j2").render(view)
    assert page.count("data:image/png;base64,") == 3 and "quarantined n/a" in page
    del view["quarantined"]
    with pytest.raises(jinja2.UndefinedError, match="quarantined"):
        templates().get_template("report.html.j2").render(view)
    summary = markdown_view(taxonomy, gate, metrics, regression)
    del summary["regression_summary"]
    with pytest.raises(jinja2.UndefinedError, match="regression_summary"):
        templates().get_template("report.md.j2").render(summary)
