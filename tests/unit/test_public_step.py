"""The run's location inputs (public data, feedback data): checked before use, resolved without escaping,
imported or visibly empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.components.generate.public_step import NO_LOCATION_NOTE, check_location, import_public_location, local_folder
from tiergate.errors import InputDataError, PromotionRefused
from tiergate.profiles import load_profile
from tiergate.records import read_jsonl
from tiergate.store import previous_repository
from tiergate.taxonomy import Taxonomy

FIXTURES = Path(__file__).parents[1] / "fixtures" / "public"


@pytest.mark.parametrize(
    "location",
    ["pvc://..", "pvc://claim/..", "pvc://claim/./x", "pvc://claim//x", "s3://bucket/../other", "pvc://", "gs://"],
)
def test_store_locations_cannot_climb_out(location: str) -> None:
    with pytest.raises(InputDataError, match="segments"):
        check_location(location)


@pytest.mark.parametrize("location", ["http://example.com/data", "ftp://x/y", "line\nbreak", "x" * 2000])
def test_other_locations_are_one_line_errors(location: str) -> None:
    with pytest.raises(InputDataError) as caught:
        check_location(location)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


@pytest.mark.parametrize("location", ["pvc://claim/../x", "s3://bucket/./x", "gs://", "pvc://claim//x"])
def test_feedback_locations_are_checked_by_the_same_rules_and_named(location: str) -> None:
    with pytest.raises(InputDataError, match=r"^feedback-data location .*segments"):
        check_location(location, "feedback-data")


@pytest.mark.parametrize("flag", ["--public-data", "--feedback-data"])
def test_pipeline_run_checks_each_location_before_anything_starts(flag: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tiergate.cli.main import app
    from tiergate.cli.pipeline_cmd import checked_location
    from tiergate.errors import TiergateError

    assert checked_location(flag, f" {tmp_path} ") == str(tmp_path)
    assert checked_location(flag, "s3://bucket/exports/week-48") == "s3://bucket/exports/week-48"
    assert checked_location(flag, "") == ""
    with pytest.raises(TiergateError, match=f"^{flag} {tmp_path / 'missing'}: no such folder"):
        checked_location(flag, str(tmp_path / "missing"))
    result = CliRunner().invoke(app, ["pipeline", "run", "--local", "--run-id", "never", flag, "pvc://claim/../up"])
    assert isinstance(result.exception, InputDataError) and flag.removeprefix("--") in str(result.exception)
    assert not Path("runs/never").exists()  # refused before the run folder was made


def test_pipeline_run_refuses_a_local_folder_that_is_no_export_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder that exists but is not a `tiergate feedback export` was refused only by the import task, mid-run."""
    from typer.testing import CliRunner

    import tiergate.pipelines.runner
    from tiergate.cli.main import app

    started: list[object] = []
    monkeypatch.setattr(tiergate.pipelines.runner, "run_local", lambda *args, **kwargs: started.append(args))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-an-export").mkdir()
    (tmp_path / "not-an-export" / "notes.txt").write_text("hello")
    args = ["pipeline", "run", "--local", "--run-id", "never", "--feedback-data", str(tmp_path / "not-an-export")]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, InputDataError), result.output
    assert "no manifest.json; point it at a folder `tiergate feedback export` wrote" in str(result.exception)
    assert started == [] and not (tmp_path / "runs").exists()


def test_accepted_locations_pass_unchanged() -> None:
    for location in ("", "/data/public", "relative/folder", "pvc://claim/public", "s3://bucket/public", "gs://b/p"):
        assert check_location(f"  {location} ") == location


def test_pvc_location_resolves_inside_the_mount(tmp_path: Path) -> None:
    settings = load_profile("local", {"publish": {"pvc_mount_root": str(tmp_path)}}).publish
    with local_folder("pvc://claim/public", settings) as folder:
        assert folder == tmp_path / "claim" / "public"


def test_an_object_store_that_cannot_be_read_is_one_line() -> None:
    settings = load_profile("local").publish
    with (
        pytest.raises(InputDataError, match=r"cannot read it \(ImportError") as caught,
        local_folder("gs://bucket/public", settings),
    ):
        pass
    assert "\n" not in str(caught.value)
    with pytest.raises(PromotionRefused, match="cannot fetch it"), previous_repository("gs://bucket/m/v/" + "a" * 64, settings):
        pass


def test_no_location_is_an_empty_dataset_that_says_so(taxonomy: Taxonomy, tmp_path: Path) -> None:
    manifest = import_public_location(taxonomy, load_profile("local"), "", tmp_path / "out")
    assert manifest.counts["records"] == 0 and manifest.notes == [NO_LOCATION_NOTE]
    assert read_jsonl(tmp_path / "out" / "records.jsonl") == []


def test_fixture_sets_import_for_training_only(taxonomy: Taxonomy, tmp_path: Path) -> None:
    manifest = import_public_location(taxonomy, load_profile("public"), str(FIXTURES), tmp_path / "out")
    datasets = set(manifest.counts["by_dataset"])
    assert "davidson" in datasets and not {"xstest", "simplesafetytests"} & datasets
    records = read_jsonl(tmp_path / "out" / "records.jsonl")
    assert records and all(record.source.generator == "public" and record.unknown for record in records)
    with pytest.raises(InputDataError, match="not found or not a folder"):
        import_public_location(taxonomy, load_profile("public"), str(tmp_path / "missing"), tmp_path / "out2")


def test_a_profile_importing_no_training_set_writes_an_empty_dataset(taxonomy: Taxonomy, tmp_path: Path) -> None:
    profile = load_profile("local")
    assert profile.public_data.datasets == []  # local trains on generated data; the location feeds the OOD checks
    manifest = import_public_location(taxonomy, profile, str(FIXTURES), tmp_path / "out")
    assert manifest.counts["records"] == 0 and "public_data.datasets: []" in manifest.notes[0]
    assert load_profile("public").public_data.datasets is None
