"""The evaluation report: one self-contained HTML file (plots inlined) and a Markdown summary.

Python prepares the view (numbers formatted, plots as data: URIs, tables as rows of cells);
`templates/report.html.j2` and `templates/report.md.j2` lay it out. The HTML template is
autoescaped because vector texts, context names and rule names come from data sets and configs.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from functools import cache
from typing import Any

import matplotlib
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tiergate.components.evaluate.report_sections import Table, markdown_cell, sections_view
from tiergate.taxonomy import Taxonomy

CATEGORY_HEADER = ["category", "tier", "threshold", "precision", "recall", "F1", "95% CI", "support", "val-test gap", "gate"]
STATUS_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "not_measurable": "#9a6700", "xfail": "#6e7781", "xpass": "#0969da"}


@cache
def templates() -> Environment:
    """The report templates, built on first use so importing this module never needs them.

    Autoescape is on for the HTML (data-set texts end up in it); Markdown cells go through `md`;
    StrictUndefined turns a key missing from a view into an error instead of an empty cell.
    """
    environment = Environment(
        loader=PackageLoader("tiergate.components.evaluate", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), disabled_extensions=("md.j2",), default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["md"] = markdown_cell
    return environment


def _png(figure: Any) -> str:
    """Close the figure and return it as a PNG data: URI, so the HTML needs no side files."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_f1_vs_gate(taxonomy: Taxonomy, metrics: dict[str, Any]) -> str:
    """Test F1 per category with its interval, coloured by pass/fail against the tier gate."""
    names = taxonomy.labels
    entries = [metrics["per_category"][name] for name in names]
    figure, axis = plt.subplots(figsize=(12, 4.5))
    colours = [
        "#9a6700" if not e["measurable"] else ("#1a7f37" if e["f1"] >= taxonomy.tier_of(n).f1_gate else "#cf222e")
        for n, e in zip(names, entries, strict=True)
    ]
    lows = [e["f1"] - e["interval"]["f1"][0] if e["interval"] else 0 for e in entries]
    highs = [e["interval"]["f1"][1] - e["f1"] if e["interval"] else 0 for e in entries]
    axis.bar(range(len(names)), [e["f1"] for e in entries], color=colours, yerr=[lows, highs], capsize=2)
    axis.scatter(
        range(len(names)), [taxonomy.tier_of(n).f1_gate for n in names], marker="_", s=200, color="black", label="tier gate"
    )
    axis.set_xticks(range(len(names)), names, rotation=75, fontsize=8)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("test F1 (95% CI)")
    axis.legend(loc="lower left")
    return _png(figure)


def plot_thresholds(taxonomy: Taxonomy, thresholds: dict[str, Any]) -> str:
    """Each tuned threshold against its allowed search range: a threshold pinned to an edge shows at once."""
    names = taxonomy.labels
    figure, axis = plt.subplots(figsize=(12, 3.5))
    for index, name in enumerate(names):
        low, high = thresholds["search"][name]["range"]
        axis.plot([index, index], [low, high], color="#afb8c1", linewidth=6)
        axis.scatter([index], [thresholds["thresholds"][name]], color="#0969da", zorder=3)
    axis.set_xticks(range(len(names)), names, rotation=75, fontsize=8)
    axis.set_ylim(0, 1)
    axis.set_ylabel("threshold (range grey)")
    return _png(figure)


def plot_pr_curves(taxonomy: Taxonomy, metrics: dict[str, Any]) -> str:
    """One small PR curve per category, with the operating point the threshold chose."""
    names = taxonomy.labels
    columns = 6
    rows = (len(names) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(14, 2.2 * rows), sharex=True, sharey=True)
    for axis, name in zip(axes.flat, names, strict=False):
        curve = metrics["per_category"][name]["pr_curve"]
        if curve["recall"]:
            axis.plot(curve["recall"], curve["precision"], color="#0969da")
        entry = metrics["per_category"][name]
        axis.scatter([entry["recall"]], [entry["precision"]], color="#cf222e", s=12)
        axis.set_title(name, fontsize=8)
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    figure.supxlabel("recall")
    figure.supylabel("precision")
    return _png(figure)


def _pairs(mapping: Mapping[str, Any], separator: str = ": ") -> str:
    """`key: value, key: value`, the one-line summaries of regression suites and dataset totals."""
    return ", ".join(f"{key}{separator}{value}" for key, value in mapping.items())


def category_table(taxonomy: Taxonomy, gate: dict[str, Any], metrics: dict[str, Any]) -> Table:
    """Per category, in model order: threshold, P/R/F1 with the F1 interval, val-test gap and the F1 gate status."""
    rows = []
    for name in taxonomy.labels:
        entry = metrics["per_category"][name]
        interval = entry["interval"].get("f1") if entry["interval"] else None
        status = next(r["status"] for r in gate["rules"] if r.get("category") == name and r["metric"] == "f1")
        rows.append(
            [
                name,
                f"T{entry['tier']}",
                f"{entry['threshold']:.2f}",
                f"{entry['precision']:.3f}",
                f"{entry['recall']:.3f}",
                f"{entry['f1']:.3f}",
                f"[{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "",
                entry["support"],
                "" if entry["val_f1"] is None else f"{entry['val_test_gap']:+.3f}",
                status,
            ]
        )
    return Table(CATEGORY_HEADER, rows, status_column=len(CATEGORY_HEADER) - 1)


def context_table(metrics: dict[str, Any]) -> Table:
    """Macro and micro F1 per audience/surface context (macro is blank where no category has positives)."""
    rows = [
        [name, entry["records"], "" if entry["macro_f1"] is None else f"{entry['macro_f1']:.3f}", f"{entry['micro_f1']:.3f}"]
        for name, entry in metrics["contexts"].items()
    ]
    return Table(["context", "records", "macro F1", "micro F1"], rows)


def vector_table(regression: dict[str, Any]) -> Table:
    """Every regression vector with its status and, for failed checks, what was missing or unwanted."""
    rows = []
    for suite, result in regression["suites"].items():
        for vector in result["vectors"]:
            problems = "; ".join(
                f"{c['context']}: missing {c['missing']} unwanted {c['unwanted']}" for c in vector["checks"] if not c["passed"]
            )
            rows.append([suite, vector["id"], vector["text"], vector["status"], problems])
    return Table(["suite", "vector", "text", "status", "problems"], rows, status_column=3)


def evasion_rows(regression: dict[str, Any]) -> list[list[Any]]:
    """Per evasion transformation: detected / plain-detected, the rate, and the vectors it hid (tiergate.evasion)."""
    evasion = regression.get("evasion", {"rows": []})
    return [
        [
            row["transform"],
            "required" if row["required"] else "reported",
            f"{row['detected']}/{row['probes']}",
            "n/a" if row["rate"] is None else f"{row['rate']:.1%}",
            ", ".join(row["missed"][:5]) + (" ..." if len(row["missed"]) > 5 else ""),
        ]
        for row in evasion["rows"]
    ]


EVASION_HEADER = ["transformation", "", "detected", "rate vs plain", "missed (first 5)"]


def evasion_table(regression: dict[str, Any]) -> Table:
    return Table(EVASION_HEADER, evasion_rows(regression))


def rule_table(gate: dict[str, Any]) -> Table:
    """The rules that block promotion, then those only warned about (not measurable under `warn`)."""
    rows = [
        [r["rule"], _rounded(r["value"]), r["floor"], r.get("support", ""), r["status"]]
        for r in gate["failures"] + gate["warnings"]
    ]
    return Table(["rule", "value", "floor", "support", "status"], rows, status_column=4)


def export_table(export_report: dict[str, Any]) -> Table:
    """Each exported variant's size and its parity with the PyTorch model (logits and decisions)."""
    rows = [
        [
            name,
            entry["file"],
            f"{entry['size_bytes'] / 1e6:.2f} MB",
            f"{entry['parity']['max_abs_diff']:.2e}",
            f"{entry['parity']['decision_agreement']:.4f}",
        ]
        for name, entry in export_report.get("variants", {}).items()
    ]
    return Table(["variant", "file", "size", "max |logit diff|", "decision agreement"], rows)


def html_view(
    taxonomy: Taxonomy,
    gate: dict[str, Any],
    metrics: dict[str, Any],
    regression: dict[str, Any],
    thresholds: dict[str, Any],
    dataset_report: dict[str, Any],
    export_report: dict[str, Any],
) -> dict[str, Any]:
    """Everything `report.html.j2` shows, formatted; the template only lays it out (and escapes it)."""
    judged = gate["judged"]
    return {
        "decision": "PROMOTE" if gate["passed"] else "REJECT",
        "decision_colour": STATUS_COLOURS["pass" if gate["passed"] else "fail"],
        "status_colours": STATUS_COLOURS,
        "smoke_test": bool(gate.get("smoke_test")),
        "macro_f1": f"{metrics['macro_f1']:.4f}",
        "micro_f1": f"{metrics['micro_f1']:.4f}",
        "records": metrics["records"],
        "model_file": judged["model_file"],
        "model_sha256": judged["model_sha256"][:16],
        "taxonomy_sha256": judged["taxonomy_sha256"][:16],
        "rules": rule_table(gate),
        "f1_chart": plot_f1_vs_gate(taxonomy, metrics),
        "categories": category_table(taxonomy, gate, metrics),
        "threshold_chart": plot_thresholds(taxonomy, thresholds),
        "pr_chart": plot_pr_curves(taxonomy, metrics),
        "contexts": context_table(metrics),
        "regression_summary": _pairs(regression["summary"]),
        "vectors": vector_table(regression),
        "evasion": evasion_table(regression),
        "evasion_summary": evasion_summary(regression),
        "dataset_totals": _pairs(dataset_report.get("totals", {})),
        "quarantined": dataset_report.get("quarantined", "n/a"),
        "near_duplicates_removed": dataset_report.get("near_duplicates_removed", "n/a"),
        "exports": export_table(export_report),
        **sections_view(metrics),
    }


def render_html(
    taxonomy: Taxonomy,
    gate: dict[str, Any],
    metrics: dict[str, Any],
    regression: dict[str, Any],
    thresholds: dict[str, Any],
    dataset_report: dict[str, Any],
    export_report: dict[str, Any],
) -> str:
    """The self-contained HTML report: decision, failing rules, plots and every table."""
    view = html_view(taxonomy, gate, metrics, regression, thresholds, dataset_report, export_report)
    return templates().get_template("report.html.j2").render(view)


def markdown_view(
    taxonomy: Taxonomy, gate: dict[str, Any], metrics: dict[str, Any], regression: dict[str, Any]
) -> dict[str, Any]:
    """Everything `report.md.j2` shows: the decision, headline numbers, tier table and failing/warned rules."""
    tiers = [
        {
            "tier": tier,
            "macro_f1": "n/a" if entry["macro_f1"] is None else f"{entry['macro_f1']:.3f}",
            "f1_gate": taxonomy.tiers[int(tier)].f1_gate,
        }
        for tier, entry in metrics["tiers"].items()
    ]
    return {
        "decision": "PROMOTE" if gate["passed"] else "REJECT",
        "smoke_test": bool(gate.get("smoke_test")),
        "macro_f1": f"{metrics['macro_f1']:.4f}",
        "micro_f1": f"{metrics['micro_f1']:.4f}",
        "records": metrics["records"],
        "tiers": tiers,
        "regression_summary": _pairs(regression["summary"], separator=" "),
        "evasion_summary": evasion_summary(regression),
        "evasion_header": EVASION_HEADER,
        "evasion": evasion_rows(regression),
        "failures": [{"rule": r["rule"], "value": _rounded(r["value"]), "status": r["status"]} for r in gate["failures"]],
        "warnings": [{"rule": r["rule"], "support": r.get("support")} for r in gate["warnings"]],
        **sections_view(metrics),
    }


def render_markdown(
    taxonomy: Taxonomy, gate: dict[str, Any], metrics: dict[str, Any], regression: dict[str, Any], dataset_report: dict[str, Any]
) -> str:
    """The short Markdown summary (the component's KFP `summary` artifact); `dataset_report` is unused."""
    return templates().get_template("report.md.j2").render(markdown_view(taxonomy, gate, metrics, regression))


def evasion_summary(regression: dict[str, Any]) -> str:
    evasion = regression.get("evasion")
    if not evasion:
        return "not measured"
    verdict = "meets" if evasion["passed"] else "BELOW"
    return (
        f"{evasion['plain_detected']}/{evasion['probes']} must-flag vectors detected as plain text; every required "
        f"transformation {verdict} the target of {evasion['target_rate']:.0%} of that"
    )


def _rounded(value: float | int | None) -> float | int | None:
    """Rule values are recorded unrounded (the gate decides on them); reports show four decimals."""
    return round(value, 4) if isinstance(value, float) else value
