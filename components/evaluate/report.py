"""The evaluation report: one self-contained HTML file (plots inlined) and a Markdown summary."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tiergate.taxonomy import Taxonomy

CATEGORY_HEADER = ["category", "tier", "threshold", "precision", "recall", "F1", "95% CI", "support", "val-test gap", "gate"]
STATUS_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "not_measurable": "#9a6700", "xfail": "#6e7781", "xpass": "#0969da"}


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_f1_vs_gate(taxonomy: Taxonomy, metrics: dict[str, Any]) -> str:
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


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(status: str) -> str:
    return f'<span style="color:{STATUS_COLOURS.get(status, "#000")};font-weight:600">{html.escape(status)}</span>'


def render_html(
    taxonomy: Taxonomy,
    gate: dict[str, Any],
    metrics: dict[str, Any],
    regression: dict[str, Any],
    thresholds: dict[str, Any],
    dataset_report: dict[str, Any],
    export_report: dict[str, Any],
) -> str:
    decision = "PROMOTE" if gate["passed"] else "REJECT"
    colour = STATUS_COLOURS["pass" if gate["passed"] else "fail"]
    category_rows = []
    for name in taxonomy.labels:
        entry = metrics["per_category"][name]
        interval = entry["interval"].get("f1") if entry["interval"] else None
        status = next(r["status"] for r in gate["rules"] if r.get("category") == name and r["metric"] == "f1")
        category_rows.append(
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
                _badge(status),
            ]
        )
    context_rows = [
        [html.escape(c), v["records"], "" if v["macro_f1"] is None else f"{v['macro_f1']:.3f}", f"{v['micro_f1']:.3f}"]
        for c, v in metrics["contexts"].items()
    ]
    vector_rows = []
    for suite, result in regression["suites"].items():
        for vector in result["vectors"]:
            problems = "; ".join(
                f"{c['context']}: missing {c['missing']} unwanted {c['unwanted']}" for c in vector["checks"] if not c["passed"]
            )
            vector_rows.append(
                [suite, html.escape(vector["id"]), html.escape(vector["text"]), _badge(vector["status"]), html.escape(problems)]
            )
    failure_rows = [
        [html.escape(r["rule"]), r["value"], r["floor"], r.get("support", ""), _badge(r["status"])]
        for r in gate["failures"] + gate["warnings"]
    ]
    smoke = (
        (
            "<p class='warn'>SMOKE-TEST DATA: built from the offline template generator. These numbers exercise the "
            "pipeline; they say nothing about real-world quality.</p>"
        )
        if gate.get("smoke_test")
        else ""
    )
    totals = dataset_report.get("totals", {})
    export_rows = [
        [
            name,
            entry["file"],
            f"{entry['size_bytes'] / 1e6:.2f} MB",
            f"{entry['parity']['max_abs_diff']:.2e}",
            f"{entry['parity']['decision_agreement']:.4f}",
        ]
        for name, entry in export_report.get("variants", {}).items()
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tiergate evaluation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1f2328; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }}
th, td {{ border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; }}
th {{ background: #f6f8fa; }}
.decision {{ font-size: 1.6rem; font-weight: 700; color: {colour}; }}
.warn {{ background: #fff8c5; padding: 0.5rem; border: 1px solid #d4a72c; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>tiergate evaluation report</h1>
<p class="decision">Gate: {decision}</p>
{smoke}
<p>Macro F1 {metrics["macro_f1"]:.4f} · micro F1 {metrics["micro_f1"]:.4f} · test records {metrics["records"]} ·
model <code>{html.escape(gate["judged"]["model_file"])}</code> sha256 <code>{gate["judged"]["model_sha256"][:16]}</code> ·
taxonomy <code>{gate["judged"]["taxonomy_sha256"][:16]}</code></p>
<h2>Failing and unmeasurable rules</h2>
{_table(["rule", "value", "floor", "support", "status"], failure_rows) if failure_rows else "<p>None.</p>"}
<h2>Per-category F1 vs tier gate</h2>
<img alt="F1 vs gate" src="{plot_f1_vs_gate(taxonomy, metrics)}">
{_table(CATEGORY_HEADER, category_rows)}
<h2>Thresholds (tuned on validation) vs search range</h2>
<img alt="thresholds" src="{plot_thresholds(taxonomy, thresholds)}">
<h2>Precision-recall curves (test)</h2>
<img alt="PR curves" src="{plot_pr_curves(taxonomy, metrics)}">
<h2>Per context</h2>
{_table(["context", "records", "macro F1", "micro F1"], context_rows)}
<h2>Regression vectors</h2>
<p>{html.escape(", ".join(f"{k}: {v}" for k, v in regression["summary"].items()))}</p>
{_table(["suite", "vector", "text", "status", "problems"], vector_rows)}
<h2>Dataset</h2>
<p>{html.escape(", ".join(f"{k}: {v}" for k, v in totals.items()))}; quarantined {dataset_report.get("quarantined", "n/a")};
near-duplicates removed {dataset_report.get("near_duplicates_removed", "n/a")}.</p>
<h2>Exported model</h2>
{_table(["variant", "file", "size", "max |logit diff|", "decision agreement"], export_rows)}
</body></html>
"""


def render_markdown(
    taxonomy: Taxonomy, gate: dict[str, Any], metrics: dict[str, Any], regression: dict[str, Any], dataset_report: dict[str, Any]
) -> str:
    lines = [f"# tiergate evaluation: {'PROMOTE' if gate['passed'] else 'REJECT'}", ""]
    if gate.get("smoke_test"):
        lines += ["> **SMOKE-TEST DATA** (offline generator): these numbers say nothing about real-world quality.", ""]
    lines += [
        f"Macro F1 **{metrics['macro_f1']:.4f}**, micro F1 {metrics['micro_f1']:.4f}, {metrics['records']} test records.",
        "",
    ]
    lines += ["| tier | macro F1 | gate |", "|---|---|---|"]
    for tier, entry in metrics["tiers"].items():
        value = "n/a" if entry["macro_f1"] is None else f"{entry['macro_f1']:.3f}"
        lines.append(f"| T{tier} | {value} | {taxonomy.tiers[int(tier)].f1_gate} |")
    lines += ["", "Regression: " + ", ".join(f"{k} {v}" for k, v in regression["summary"].items()), ""]
    if gate["failures"]:
        lines += ["## Failing rules", ""] + [f"- `{r['rule']}`: {r['value']} ({r['status']})" for r in gate["failures"]]
    if gate["warnings"]:
        lines += ["", "## Not measurable (warned)", ""] + [
            f"- `{r['rule']}`: support {r.get('support')}" for r in gate["warnings"]
        ]
    return "\n".join(lines) + "\n"
