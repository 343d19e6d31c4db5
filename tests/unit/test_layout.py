"""The house rules: one import root in the wheel, and no import runs from a lower layer up.

Layers, bottom to top: core (`tiergate/`) → steps (`components/`) → pipeline (`pipelines/`)
→ serving (`serving/`) → CLI (`cli/`). A module may import its own layer and those below.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tiergate.paths import PROJECT_ROOT

# Repository folder → (import package, layer rank). Order is the direction of travel.
FOLDERS = {
    "tiergate": ("tiergate", 0),
    "components": ("tiergate.components", 1),
    "pipelines": ("tiergate.pipelines", 2),
    "serving": ("tiergate.serving", 3),
    "cli": ("tiergate.cli", 4),
}
LAYER_NAMES = {rank: folder for folder, (_, rank) in FOLDERS.items()}


def layer_of(module: str) -> int | None:
    """The layer of a `tiergate...` module name; None for anything outside the import root."""
    if module != "tiergate" and not module.startswith("tiergate."):
        return None
    ranks = [rank for package, rank in FOLDERS.values() if module == package or module.startswith(package + ".")]
    return max(ranks)  # the most specific package wins (tiergate.components.x is a step, not core)


def source_files() -> Iterator[tuple[Path, int]]:
    for folder, (_, rank) in FOLDERS.items():
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            yield path, rank


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """Every absolute import in the file, including those inside functions (KFP component bodies)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:  # `from tiergate import cli` imports the sub-package
                yield node.lineno, f"{node.module}.{alias.name}"


def upward_imports() -> list[str]:
    found = []
    for path, rank in source_files():
        for line, module in imported_modules(path):
            target = layer_of(module)
            if target is not None and target > rank:
                where = path.relative_to(PROJECT_ROOT)
                found.append(f"{where}:{line} ({LAYER_NAMES[rank]}) imports {module} ({LAYER_NAMES[target]})")
    return found


def test_no_import_runs_upward() -> None:
    assert upward_imports() == []


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The walker itself: a core module importing a step must be reported (inside a function too)."""
    module = tmp_path / "core.py"
    module.write_text("def f():\n    from tiergate.components.merge.step import merge_datasets\n")
    assert [layer_of(name) for _, name in imported_modules(module)] == [1, 1]
    assert layer_of("tiergate.taxonomy") == 0 and layer_of("tiergate.cli.main") == 4 and layer_of("kfp.dsl") is None


def test_no_top_level_folder_is_imported_by_its_folder_name() -> None:
    """`import components` would work in the repository but not from the wheel: always go through `tiergate.`."""
    stray = [
        f"{path.relative_to(PROJECT_ROOT)}:{line} imports {module}"
        for path, _ in source_files()
        for line, module in imported_modules(path)
        if module.split(".")[0] in {"components", "pipelines", "serving", "cli"}
    ]
    assert stray == []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """Build the wheel offline from a copy of the tree (the build writes build/ and *.egg-info)."""
    source = tmp_path_factory.mktemp("src") / "tiergate"
    ignore = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", ".cache", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(PROJECT_ROOT, source, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out)]
    subprocess.run([*command, str(source)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("tiergate-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_installs_one_import_root(wheel: zipfile.ZipFile) -> None:
    top_level = {name.split("/")[0] for name in wheel.namelist()}
    assert {entry for entry in top_level if not entry.endswith(".dist-info")} == {"tiergate"}


def test_wheel_holds_every_package_and_its_data(wheel: zipfile.ZipFile) -> None:
    """A new sub-package not listed in pyproject, or a template left out of package-data, fails here."""
    names = set(wheel.namelist())
    for folder, (package, _) in FOLDERS.items():
        for init in (PROJECT_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(PROJECT_ROOT / folder)
            inside = "/".join([*package.split("."), *relative.parts, "__init__.py"])
            assert inside in names, f"{init.relative_to(PROJECT_ROOT)} is not in the wheel (list it in pyproject)"
    data = [p for p in PROJECT_ROOT.glob("components/**/*") if p.suffix in {".j2"} or "triton_models" in p.parts]
    data += [PROJECT_ROOT / "pipelines" / "compiled" / "tiergate.yaml"]
    for path in data:
        if path.is_file() and "__pycache__" not in path.parts:
            folder, *rest = path.relative_to(PROJECT_ROOT).parts
            inside = "/".join([*FOLDERS[folder][0].split("."), *rest])
            assert inside in names, f"{path.relative_to(PROJECT_ROOT)} is not in the wheel (add it to package-data)"


def test_wheel_ships_the_config_tree(wheel: zipfile.ZipFile) -> None:
    """config/ is package data of `tiergate.config`: an installed tiergate needs no checkout."""
    names = set(wheel.namelist())
    for must in ("taxonomy.yaml", "profiles/base.yaml", "profiles/production.yaml", "generators/offline.yaml"):
        assert f"tiergate/config/{must}" in names, f"config/{must} is not in the wheel"
    for path in (PROJECT_ROOT / "config").rglob("*.yaml"):
        inside = "/".join(["tiergate", "config", *path.relative_to(PROJECT_ROOT / "config").parts])
        assert inside in names, f"{path.relative_to(PROJECT_ROOT)} is not in the wheel (add it to package-data)"


def test_wheel_ships_the_vendored_kserve_crds(wheel: zipfile.ZipFile) -> None:
    """The promote image validates rendered manifests against these: they must be installed."""
    names = set(wheel.namelist())
    for path in (PROJECT_ROOT / "tiergate" / "vendor" / "kserve").iterdir():
        assert f"tiergate/vendor/kserve/{path.name}" in names, f"{path.relative_to(PROJECT_ROOT)} is not in the wheel"


def test_unpacked_wheel_works_outside_the_repository(wheel: zipfile.ZipFile, tmp_path: Path) -> None:
    """The wheel's own code and config, run from `/`: no file of the checkout is read.

    PYTHONPATH puts the unpacked wheel before site-packages (the venv's editable finder is
    appended to sys.meta_path, so it only answers what the path did not); the test asserts
    that the tiergate imported is the unpacked one.
    """
    wheel.extractall(tmp_path / "site")
    env = {key: value for key, value in os.environ.items() if key not in {"TIERGATE_HOME", "PYTHONPATH"}}
    env["PYTHONPATH"] = str(tmp_path / "site")
    where = subprocess.run(
        [sys.executable, "-c", "import tiergate, tiergate.paths; print(tiergate.__file__); print(tiergate.paths.config_dir())"],
        cwd="/", env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()
    assert all(Path(path).is_relative_to(tmp_path / "site") for path in where), where
    root = subprocess.run(
        [sys.executable, "-c", "from tiergate.paths import project_path; print(project_path('runs/pvc'))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()
    assert root == str(tmp_path / "runs" / "pvc"), "outside a checkout, run paths are relative to the working directory"
    for command in (["taxonomy", "validate"], ["taxonomy", "show", "--json"], ["--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "tiergate.cli.main", *command], cwd="/", env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"tiergate {' '.join(command)}: {result.stderr[-2000:]}"
    assert result.stdout.strip()
    check = (
        "from tiergate.profiles import load_profile; from tiergate.k8s_validation import crd_schema; "
        "crd_schema('serving.kserve.io', 'InferenceService', 'v1beta1'); "
        "crd_schema('tiergate.io', 'ModerationModel', 'v1alpha1'); print(load_profile('production').name)"
    )
    profile = subprocess.run(
        [sys.executable, "-c", check],
        cwd="/", env=env, capture_output=True, text=True, check=True, timeout=60,
    )
    assert profile.stdout.strip() == "production"
