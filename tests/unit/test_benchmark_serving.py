"""benchmarks/serving.py on a run the gate did not promote: one line, before any timing, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tiergate.paths import PROJECT_ROOT


def test_a_run_without_a_model_repository_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "kfp").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / "serving.py"), "--run", str(run)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == f"{run}: no model_repository (the gate did not promote it); nothing to serve"
    assert sorted(path.name for path in run.iterdir()) == ["kfp"]  # no triton-bench folder
