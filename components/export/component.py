"""KFP wrapper for the export step."""

from kfp.dsl import Dataset, Input, Markdown, Model, Output


def export(
    profile: str, checkpoint: Input[Model], data: Input[Dataset], onnx_model: Output[Model], report: Output[Markdown]
) -> None:
    """fp32 + fp16 ONNX with the parity gate; fails the task when parity fails."""
    import shutil
    from pathlib import Path

    from tiergate.components.export.step import export_model
    from tiergate.profiles import load_profile
    from tiergate.progress import setup_logging
    from tiergate.taxonomy import load_taxonomy

    setup_logging()
    result = export_model(
        load_taxonomy(), load_profile(profile), Path(checkpoint.path), Path(data.path), Path(onnx_model.path), overwrite=True
    )
    shutil.copyfile(Path(onnx_model.path) / "export_report.md", report.path)
    onnx_model.metadata.update(
        {
            "served_variant": "fp16",
            "fp16_sha256": result["variants"]["fp16"]["sha256"],
            "taxonomy_sha256": result["taxonomy_sha256"],
        }
    )
