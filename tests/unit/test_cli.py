"""The CLI as a user meets it: a real subprocess, `--help` everywhere, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from tiergate.cli.main import app


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tiergate.cli.main", *args], capture_output=True, text=True, cwd=cwd)


def _command_paths(command: click.Command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    if hasattr(command, "commands"):  # typer's groups are not click.Group subclasses
        for name, sub in command.commands.items():
            paths += _command_paths(sub, (*prefix, name))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))
assert len(COMMANDS) > 20, COMMANDS  # the walk must reach the sub-commands


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "tiergate")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help or command.short_help, f"{' '.join(path)} has no help text"


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    cases = [
        ("data", "generate", "--out", str(tmp_path), "--profile", "nope"),
        ("data", "generate", "--out", str(tmp_path), "--category", "threatz"),
        ("data", "merge", str(tmp_path / "missing"), "--out", str(tmp_path / "m")),
        ("taxonomy", "validate", str(tmp_path / "missing.yaml")),
        ("data", "generate", "--out", str(tmp_path), "--counts", "positivez=3"),
    ]
    for args in cases:
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_generate_and_merge_cli_twice_byte_identical(tmp_path: Path) -> None:
    outputs = []
    for attempt in ("a", "b"):
        generated = tmp_path / attempt / "generated"
        assert (
            run(
                "data",
                "generate",
                "--out",
                str(generated),
                "-c",
                "threats",
                "-c",
                "doxxing",
                "-c",
                "harassment",
                "--counts",
                "positives=30",
            ).returncode
            == 0
        )
        merged = run("data", "merge", str(generated), "--out", str(tmp_path / attempt / "merged"))
        assert merged.returncode == 0, merged.stderr
        assert "splits" in merged.stdout and "SMOKE-TEST" in merged.stdout
        outputs.append(
            {
                path.relative_to(tmp_path / attempt): path.read_bytes()
                for path in sorted((tmp_path / attempt).rglob("*"))
                if path.is_file()
            }
        )
    assert outputs[0] == outputs[1]
    assert any(str(path).endswith("train.jsonl") for path in outputs[0])
    report = json.loads(outputs[0][Path("generated/threats/report.json")])
    assert report["requested"]["positive"] == 30
