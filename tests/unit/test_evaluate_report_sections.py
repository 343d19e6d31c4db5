"""The report's new sections escape data-set texts in the HTML and say "not measured" when absent."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from tests.unit.test_report import ESCAPED, HOSTILE, inputs  # noqa: F401 - the module's fixture, reused
from tiergate.components.evaluate.analysis import error_analysis
from tiergate.components.evaluate.report import render_html, render_markdown
from tiergate.components.evaluate.report_sections import NOT_MEASURED
from tiergate.labels import targets_and_known
from tiergate.records import Context, Kind, Source, make_record
from tiergate.taxonomy import Taxonomy


def test_error_examples_are_escaped_in_the_html_and_kept_out_of_the_summary(
    taxonomy: Taxonomy,
    inputs: dict[str, Any],  # noqa: F811
) -> None:
    source = Source(generator="t", model="t", prompt_id="p", category="threats", kind=Kind.POSITIVE)
    records = [make_record(HOSTILE, Context(audience="general", surface="message"), ["threats"], source)]
    targets, known = targets_and_known(records, taxonomy.labels)
    scores = np.zeros(targets.shape, np.float32)  # a missed positive: a false negative of threats
    metrics = copy.deepcopy(inputs["metrics"])
    metrics["error_analysis"] = error_analysis(taxonomy.labels, records, scores, scores >= 0.5, targets, known, 3)
    page = render_html(taxonomy, inputs["gate"], metrics, inputs["regression"], inputs["thresholds"], {}, {})
    assert "<script" not in page and f"<td>{ESCAPED}</td>" in page
    summary = render_markdown(taxonomy, inputs["gate"], metrics, inputs["regression"], {})
    assert HOSTILE not in summary


def test_sections_missing_from_older_metrics_say_not_measured(taxonomy: Taxonomy, inputs: dict[str, Any]) -> None:  # noqa: F811
    page = render_html(taxonomy, inputs["gate"], inputs["metrics"], inputs["regression"], inputs["thresholds"], {}, {})
    summary = render_markdown(taxonomy, inputs["gate"], inputs["metrics"], inputs["regression"], {})
    for text in (page, summary):
        assert text.count(NOT_MEASURED) >= 3  # out-of-distribution, baseline, comparison
