"""Report views of the error analysis, out-of-distribution checks, baseline and previous-model comparison.

Each section is always shown: a metrics.json without it (an evaluation from before these checks)
says "not measured", never an empty space. Texts are cut in `analysis`; the HTML template escapes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tiergate.components.evaluate.ood import top_reasons


@dataclass(frozen=True)
class Table:
    """A report table: formatted cells; the cells of `status_column` render as coloured status badges."""

    header: list[str]
    rows: list[list[Any]]
    status_column: int | None = None


NOT_MEASURED = "not measured in this evaluation"
CLASSIFIER_NAMES = {"model": "model", "baseline": "baseline (alt-profanity-check)"}
CHECK_NAMES = {
    "false_positive_rate": "false-positive rate (prompts that must not be flagged)",
    "detection_rate": "detection rate (prompts that should be flagged)",
}


MARKDOWN_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "&#96;", "|": "&#124;"}


def markdown_cell(value: Any) -> str:
    """One value as Markdown text that stays text: no HTML tag, entity, code span or table pipe from a
    data set's name, a user's path or a rule survives into report.md (the template applies it to every cell)."""
    text = " ".join(str(value).split())
    return "".join(MARKDOWN_ESCAPES.get(char, char) for char in text)


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(interval: list[float] | None) -> str:
    return "" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def _rate(entry: dict[str, Any]) -> str:
    return "n/a" if entry["rate"] is None else f"{entry['rate']:.1%} {_interval(entry['interval'])}"


# ---- out-of-distribution checks ------------------------------------------------------------------


def _left_out_line(name: str, entry: dict[str, Any]) -> str:
    """How many rows the suite read, left out (with the top reasons) and skipped on principle."""
    left_out, skipped = entry.get("left_out", {}), entry.get("skipped", {})
    lost = sum(left_out.values())
    line = f"{name}: {entry['prompts']} prompts read, {lost} rows left out" + (f" ({top_reasons(left_out)})" if lost else "")
    if skipped:
        line += f", {sum(skipped.values())} skipped by the adapter ({top_reasons(skipped)})"
    return line


def ood_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per suite and check: the model's rate beside the baseline's, or why it was not run;
    per suite, what was left out and whether the rates speak for the published set."""
    ood = metrics.get("ood")
    if ood is None:
        return [NOT_MEASURED]
    lines = []
    for name, entry in ood["sets"].items():
        if entry["status"] != "run":
            lines.append(f"{name}: {entry['reason']}")
            continue
        lines.append(_left_out_line(name, entry))
        for check, results in entry["checks"].items():
            rates = "; ".join(f"{CLASSIFIER_NAMES.get(who, who)} {_rate(result)}" for who, result in results.items())
            lines.append(f"{name} {CHECK_NAMES[check]}, {next(iter(results.values()))['prompts']} prompts: {rates}")
    return lines


def ood_warnings(metrics: dict[str, Any]) -> list[str]:
    """One warning per incomplete suite: its rates are not the published suite's."""
    sets = (metrics.get("ood") or {}).get("sets", {})
    return [
        f"{name} is INCOMPLETE, its rates do not speak for the published set: {'; '.join(entry['incomplete'])}"
        for name, entry in sets.items()
        if entry.get("incomplete")
    ]


def ood_tables(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Per suite and check: the rate of every classifier by group (XSTest type, SST harm area)."""
    ood = metrics.get("ood") or {"sets": {}}
    sections = []
    for entry in ood["sets"].values():
        for check, results in entry.get("checks", {}).items():
            who = list(results)
            groups = list(results[who[0]]["by_group"])
            rows = [
                [group, results[who[0]]["by_group"][group]["prompts"], *(_rate(results[w]["by_group"][group]) for w in who)]
                for group in groups
            ]
            rows.append(["all", results[who[0]]["prompts"], *(_rate(results[w]) for w in who)])
            fired = results.get("model", {}).get("columns_fired", {})
            sections.append(
                {
                    "title": f"{entry['title']}: {CHECK_NAMES[check]}",
                    "table": Table(["group", "prompts", *(CLASSIFIER_NAMES.get(w, w) for w in who)], rows),
                    "fired": ", ".join(f"{label} {count}" for label, count in list(fired.items())[:8]) or "none",
                }
            )
    return sections


# ---- baseline ------------------------------------------------------------------------------------

BASELINE_HEADER = ["scope", "rows", "positives", "classifier", "precision", "recall", "F1", "AUPRC"]


def baseline_table(metrics: dict[str, Any]) -> Table:
    """The model's row and the linear baseline's, on "any category" and on the categories the baseline speaks to."""
    baseline = metrics.get("baseline")
    if baseline is None:
        return Table(BASELINE_HEADER, [])
    scopes = [("any category", baseline["binary"]), *baseline["categories"].items()]
    rows = []
    for scope, entry in scopes:
        for who in ("model", "baseline"):
            result = entry[who]
            rows.append(
                [
                    scope,
                    entry["rows"],
                    entry["support"],
                    "model" if who == "model" else baseline["name"],
                    _number(result["precision"]),
                    _number(result["recall"]),
                    _number(result["f1"]),
                    _number(result["auprc"]),
                ]
            )
    return Table(BASELINE_HEADER, rows)


def baseline_line(metrics: dict[str, Any]) -> str:
    baseline = metrics.get("baseline")
    if baseline is None:
        return NOT_MEASURED
    binary = baseline["binary"]
    model, other = binary["model"]["f1"], binary["baseline"]["f1"]
    verdict = "beats" if model > other else "does NOT beat"
    return f"any-category F1: model {model:.3f}, {baseline['name']} {other:.3f}: the model {verdict} the linear baseline"


# ---- previous model ------------------------------------------------------------------------------

COMPARISON_HEADER = [
    "category",
    "blocks on a drop",
    "previous F1",
    "current F1",
    "change",
    "95% CI (paired)",
    "support",
    "status",
]


def comparison_note(metrics: dict[str, Any]) -> str:
    comparison = metrics.get("comparison")
    if comparison is None:
        return NOT_MEASURED
    if comparison["status"] != "compared":
        return comparison["note"]
    blocking = comparison["blocking"]
    verdict = f"BLOCKING: {', '.join(blocking)}" if blocking else "no blocking regression"
    return f"{comparison['note']}; tolerance {comparison['max_f1_drop']} F1; {verdict}"


def _change_cells(entry: dict[str, Any]) -> list[str]:
    """Previous F1, current F1, change and interval; n/a where no test row knows the category."""
    if entry.get("rows", 1) == 0:
        return ["n/a", "n/a", "n/a", "no row knows this category"]
    return [_number(entry["previous_f1"]), _number(entry["current_f1"]), f"{entry['delta']:+.3f}", _interval(entry["interval"])]


def comparison_table(metrics: dict[str, Any]) -> Table:
    """Every category's F1 change against the previous model; listed categories block a real drop."""
    comparison = metrics.get("comparison") or {"categories": {}}
    rows = [
        [
            name,
            "yes" if entry["protected"] else "no",
            *_change_cells(entry),
            entry["support"],
            "fail" if entry["blocks"] else "pass",
        ]
        for name, entry in comparison["categories"].items()
    ]
    return Table(COMPARISON_HEADER, rows, status_column=len(COMPARISON_HEADER) - 1)


# ---- error analysis ------------------------------------------------------------------------------


def context_f1_table(metrics: dict[str, Any]) -> Table:
    """Rows = categories, columns = contexts: F1 with its known-positive support; blank without positives."""
    analysis = metrics.get("error_analysis")
    if analysis is None:
        return Table(["category"], [])
    table = analysis["category_context"]
    rows = [
        [name, *("" if cells[c]["f1"] is None else f"{cells[c]['f1']:.3f} (n={cells[c]['support']})" for c in table["contexts"])]
        for name, cells in table["categories"].items()
    ]
    return Table(["category", *table["contexts"]], rows)


EXAMPLE_HEADER = ["score", "context", "text", "true labels (scores)", "also flagged (scores)"]


def _scores(named: dict[str, float]) -> str:
    return ", ".join(f"{name} {score:.2f}" for name, score in named.items()) or "none"


def _examples(examples: list[dict[str, Any]]) -> Table:
    rows = [[f"{e['score']:.3f}", e["context"], e["text"], _scores(e["true_labels"]), _scores(e["flagged"])] for e in examples]
    return Table(EXAMPLE_HEADER, rows)


def error_examples(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Per category with errors: its top false positives and false negatives (already cut to a short line)."""
    analysis = metrics.get("error_analysis")
    if analysis is None:
        return []
    return [
        {
            "category": name,
            "false_positive_count": entry["false_positive_count"],
            "false_negative_count": entry["false_negative_count"],
            "false_positives": _examples(entry["false_positives"]),
            "false_negatives": _examples(entry["false_negatives"]),
        }
        for name, entry in analysis["categories"].items()
        if entry["false_positives"] or entry["false_negatives"]
    ]


def source_table(metrics: dict[str, Any]) -> Table:
    """Test metrics per data source: generated data proves the plumbing, the public sets measure real text."""
    rows = [
        [
            name,
            entry["records"],
            entry["categories"],
            "" if entry["macro_f1"] is None else f"{entry['macro_f1']:.3f}",
            f"{entry['micro_f1']:.3f}",
            f"{entry['negative_rows_flagged']} / {entry['negative_rows']}",
        ]
        for name, entry in (metrics.get("sources") or {}).items()
    ]
    return Table(["source", "test records", "categories", "macro F1", "micro F1", "negatives flagged"], rows)


def sections_view(metrics: dict[str, Any]) -> dict[str, Any]:
    """The template variables of the four sections (HTML and Markdown share them)."""
    analysis = metrics.get("error_analysis")
    return {
        "sources": source_table(metrics),
        "ood_lines": ood_lines(metrics),
        "ood_warnings": ood_warnings(metrics),
        "ood_tables": ood_tables(metrics),
        "baseline_line": baseline_line(metrics),
        "baseline": baseline_table(metrics),
        "comparison_note": comparison_note(metrics),
        "comparison": comparison_table(metrics),
        "context_f1": context_f1_table(metrics),
        "error_k": NOT_MEASURED if analysis is None else analysis["k"],
        "error_examples": error_examples(metrics),
    }
