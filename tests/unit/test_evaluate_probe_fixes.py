"""The evaluation step's new sections against the hostile probe of issue 16: each finding, fast and in-process
(the tampered real repository is in test_evaluate_extended.py, beside the other tiny-model tests)."""

from __future__ import annotations

import copy
import csv
import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.unit.test_evaluate_checks import SST, _previous_stub, keyword_flagger, write_public
from tests.unit.test_report import inputs  # noqa: F401 - the module's fixture, reused
from tiergate.components.evaluate import comparison as comparison_module
from tiergate.components.evaluate.comparison import compare, load_previous
from tiergate.components.evaluate.ood import load_sets, run_ood
from tiergate.components.evaluate.report import render_html, render_markdown
from tiergate.components.evaluate.report_sections import comparison_table, markdown_cell
from tiergate.errors import InputDataError, TiergateError
from tiergate.onnx_model import META_PREFIX
from tiergate.taxonomy import Taxonomy

TIERGATE = Path(sys.executable).parent / "tiergate"
CHILD_SAFETY_REASON = "child-safety prompts are never imported (content rule)"


def _xstest(root: Path, rows: list[tuple[str, ...]], header: str = "id,prompt,type,label") -> Path:
    folder = root / "xstest"
    folder.mkdir(parents=True)
    lines = [header.encode(), *(",".join(row).encode("utf-8", "surrogateescape") for row in rows)]
    (folder / "xstest_prompts.csv").write_bytes(b"\n".join(lines) + b"\n")
    return root


def _sst(root: Path, rows: list[tuple[str, ...]]) -> Path:
    (root / "simplesafetytests").mkdir(parents=True)
    with (root / "simplesafetytests" / "SimpleSafetyTests - test cases.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "harm_area", "counter", "category", "prompts_final"])
        writer.writerows(rows)
    return root


# ---- 2: an undecodable byte is one left-out row, not a crash in the tokenizer ----------------------------


def test_an_undecodable_byte_leaves_its_row_out(taxonomy: Taxonomy, tmp_path: Path) -> None:
    bad = "caf\udcff\udcfe"  # the bytes 0xff 0xfe, as surrogateescape writes them back
    root = _xstest(tmp_path, [("1", bad, "homonyms", "safe"), ("2", "how do i kill a python process", "homonyms", "safe")])
    sets, _ = load_sets(taxonomy, root)
    (xstest,) = sets
    assert [prompt.text for prompt in xstest.prompts] == ["how do i kill a python process"]
    assert list(xstest.left_out.values()) == [1] and "not valid utf-8" in next(iter(xstest.left_out))
    text = xstest.prompts[0].text
    text.encode("utf-8")  # every prompt read is encodable: nothing reaches the tokenizer that would break it


# ---- 3: the content rule whatever the spelling; rows no rule knows are left out -----------------------------


@pytest.mark.parametrize("spelling", ["Child Safety", "child safety", "Child  safety", " CHILD SAFETY "])
def test_child_safety_rows_are_skipped_in_any_spelling(taxonomy: Taxonomy, tmp_path: Path, spelling: str) -> None:
    root = _sst(tmp_path, [SST[0], ("sst_9", spelling, "1", "Instructions and actions", "placeholder row the adapter must skip")])
    (sst,), _ = load_sets(taxonomy, root)
    assert [prompt.text for prompt in sst.prompts] == [SST[0][4]]
    assert sst.skipped == {CHILD_SAFETY_REASON: 1} and sst.left_out == {}


def test_a_row_no_rule_matches_is_left_out_not_expected_to_be_flagged(taxonomy: Taxonomy, tmp_path: Path) -> None:
    root = _sst(tmp_path, [SST[0], ("sst_8", "Other area", "1", "Instructions and actions", "a row of an unknown area")])
    (sst,), _ = load_sets(taxonomy, root)
    assert [prompt.text for prompt in sst.prompts] == [SST[0][4]]
    assert sum(sst.left_out.values()) == 1 and "does not know" in next(iter(sst.left_out))
    spelled = _sst(tmp_path / "spelled", [("x", " scams  AND fraud ", "1", "c", "a fake bank message")])
    (sst,), _ = load_sets(taxonomy, spelled)
    assert [(prompt.text, prompt.expect_flag) for prompt in sst.prompts] == [("a fake bank message", True)]


# ---- 4: left-out rows and incomplete sets are in the reports -------------------------------------------------


def test_left_out_rows_and_incomplete_sets_are_reported(
    taxonomy: Taxonomy,
    tmp_path: Path,
    inputs: dict[str, Any],  # noqa: F811
) -> None:
    rows = [(str(i), f"how do i kill process {i}", "homonyms", "safe") for i in range(130)]
    rows += [(str(i), f"how do i scare person {i}", "contrast_homonyms", "unsafe") for i in range(130, 230)]
    rows += [(str(i), f"prompt {i}", "homonyms", "maybe") for i in range(230, 250)]  # 20 of 250: 8% left out
    root = _xstest(tmp_path, rows)
    ood = run_ood(*load_sets(taxonomy, root), [keyword_flagger("kill")], 0.95, root)
    xstest = ood["sets"]["xstest"]
    assert xstest["prompts"] == 230 and sum(xstest["left_out"].values()) == 20
    assert not xstest["complete"] and len(xstest["incomplete"]) == 1 and "20 of 250 rows left out" in xstest["incomplete"][0]
    metrics = {**copy.deepcopy(inputs["metrics"]), "ood": ood}
    summary = render_markdown(taxonomy, inputs["gate"], metrics, inputs["regression"], {})
    page = render_html(taxonomy, inputs["gate"], metrics, inputs["regression"], inputs["thresholds"], {}, {})
    for text in (summary, page):
        assert "xstest is INCOMPLETE" in text and "230 prompts read, 20 rows left out" in text
        assert "20× label value the adapter does not know" in text


def test_a_two_prompt_xstest_is_incomplete_not_a_valid_rate(taxonomy: Taxonomy, tmp_path: Path) -> None:
    ood = run_ood(*load_sets(taxonomy, write_public(tmp_path)), [keyword_flagger("kill")], 0.95, tmp_path)
    xstest, sst = ood["sets"]["xstest"], ood["sets"]["simplesafetytests"]
    assert xstest["left_out"] == {} and not xstest["complete"]
    assert any("3 prompts for the false positive rate, the published set has 250" in why for why in xstest["incomplete"])
    assert any("1 prompts for the detection rate, the published set has 200" in why for why in xstest["incomplete"])
    assert sst["incomplete"] == ["2 prompts for the detection rate, the published set has 80"]


# ---- 5: "no prompts" says why; a reader error is named once ----------------------------------------------------


def test_no_prompts_read_names_the_top_reasons(taxonomy: Taxonomy, tmp_path: Path) -> None:
    root = _xstest(tmp_path / "label", [("1", "a prompt", "homonyms", "maybe"), ("2", "another", "homonyms", "")])
    with pytest.raises(InputDataError, match=r"no prompts read for xstest: 2× label value the adapter does not know"):
        load_sets(taxonomy, root)
    root = _xstest(tmp_path / "column", [("1", "homonyms", "safe")], header="id,type,label")
    with pytest.raises(InputDataError, match=r"no prompts read for xstest: 1× missing text \(field 'prompt'\)"):
        load_sets(taxonomy, root)
    root = _xstest(tmp_path / "quote", [("1", '"an open quote', "homonyms", "safe")])
    with pytest.raises(InputDataError, match="unparseable row") as error:
        load_sets(taxonomy, root)
    assert str(error.value).count("unparseable row") == 1


def test_a_header_naming_a_column_twice_is_refused(taxonomy: Taxonomy, tmp_path: Path) -> None:
    root = _xstest(tmp_path, [("1", "a text", "other text", "safe")], header="id,prompt,prompt,label")
    with pytest.raises(InputDataError, match=r"duplicate column names \['prompt'\]"):
        load_sets(taxonomy, root)


# ---- 6: an explicit --public-data that holds no suite ------------------------------------------------------------


def test_a_public_data_location_with_no_suite_warns(taxonomy: Taxonomy, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "public").mkdir()
    with caplog.at_level(logging.WARNING):
        ood = run_ood(*load_sets(taxonomy, tmp_path / "public"), [keyword_flagger("kill")], 0.95, tmp_path / "public")
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert "holds neither xstest/ nor simplesafetytests/" in caplog.records[0].getMessage()
    assert ood["status"] == "not run" and ood["reason"] == f"not run: no suite found under {tmp_path / 'public'}"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TIERGATE), *args], capture_output=True, text=True, timeout=120)


def test_cli_refuses_a_public_data_folder_without_suites_and_an_empty_previous_model(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    base = ["evaluate", "-m", str(tmp_path / "export"), "-d", str(tmp_path / "data"), "-o", str(tmp_path / "out")]
    for extra, fragment in (
        (["--public-data", str(tmp_path / "public")], "holds neither xstest/ nor simplesafetytests/"),
        (["--previous-model", ""], "--previous-model: an empty path"),
        (["--public-data", ""], "--public-data: an empty path"),
    ):
        result = _cli(*base, *extra)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and fragment in result.stderr


# ---- 7: a broken previous model fails at load, in one line ------------------------------------------------------


def _verified_stub(monkeypatch: pytest.MonkeyPatch, taxonomy: Taxonomy, root: Path) -> None:
    """A repository whose manifest is consistent (the probe re-hashed it): the model file itself is the problem."""
    manifest = SimpleNamespace(taxonomy_sha256=taxonomy.labels_sha256, model_version="9", digest="ef" * 32)
    monkeypatch.setattr(comparison_module, "verify_local_repository", lambda *a, **k: SimpleNamespace(manifest=manifest))
    (root / "classifier" / "1").mkdir(parents=True)
    (root / "tokenizer" / "1" / "tokenizer").mkdir(parents=True)
    (root / "postprocess" / "1").mkdir(parents=True)


def test_a_corrupt_previous_onnx_is_one_line(taxonomy: Taxonomy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _verified_stub(monkeypatch, taxonomy, tmp_path)
    (tmp_path / "classifier" / "1" / "model.onnx").write_bytes(b"\x08\x07not a protobuf at all\xff\xff")
    with pytest.raises(TiergateError) as error:
        load_previous(taxonomy, tmp_path, 8)
    assert str(error.value).startswith(f"previous model {tmp_path}") and "\n" not in str(error.value)


def test_a_previous_model_with_other_labels_fails_at_load(
    taxonomy: Taxonomy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    from onnx import TensorProto, helper

    _verified_stub(monkeypatch, taxonomy, tmp_path)
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, len(taxonomy.labels) - 1])
    graph = helper.make_graph([], "g", [output], [output])
    model = helper.make_model(graph)
    helper.set_model_props(model, {f"{META_PREFIX}labels": json.dumps(taxonomy.labels[:-1])})
    onnx.save(model, str(tmp_path / "classifier" / "1" / "model.onnx"))
    with pytest.raises(TiergateError) as error:
        load_previous(taxonomy, tmp_path, 8)
    assert "label" in str(error.value) and "\n" not in str(error.value)


# ---- 8: report.md cells stay text; n/a where no row knows a category ----------------------------------------------


def test_markdown_cells_escape_html_code_and_pipes() -> None:
    assert markdown_cell("<b>x</b> & `y` | z\nw") == "&lt;b&gt;x&lt;/b&gt; &amp; &#96;y&#96; &#124; z w"


def test_report_md_carries_no_raw_html_from_names_and_paths(
    taxonomy: Taxonomy,
    inputs: dict[str, Any],  # noqa: F811
) -> None:
    hostile = "<img src=x onerror=alert(1)>|`x`"
    metrics = copy.deepcopy(inputs["metrics"])
    entry = {"records": 1, "categories": 1, "macro_f1": None, "micro_f1": 0.5, "negative_rows_flagged": 0, "negative_rows": 0}
    metrics["sources"] = {hostile: entry}
    metrics["ood"] = {"sets": {"xstest": {"status": "not run", "reason": f"not run: /tmp/{hostile}/xstest not found"}}}
    metrics["comparison"] = {"status": "first model", "note": f"against {hostile}", "categories": {}, "blocking": []}
    summary = render_markdown(taxonomy, inputs["gate"], metrics, inputs["regression"], {})
    assert "<img" not in summary and "`x`" not in summary and "|`" not in summary
    assert summary.count("&lt;img src=x onerror=alert(1)&gt;&#124;&#96;x&#96;") == 3


def test_a_category_no_row_knows_shows_n_a(taxonomy: Taxonomy) -> None:
    targets = np.zeros((4, len(taxonomy.labels)), bool)
    known = np.ones_like(targets)
    known[:, taxonomy.labels.index("threats")] = False
    result = compare(taxonomy, _previous_stub(), targets, targets, targets, known, 0, 0.95, 0)  # type: ignore[arg-type]
    assert result["categories"]["threats"]["rows"] == 0
    row = next(row for row in comparison_table({"comparison": result}).rows if row[0] == "threats")
    assert row[2:5] == ["n/a", "n/a", "n/a"]
    assert result["previous"]["model_version"] == "7" and result["previous"]["repository_digest"] == "cd" * 32
