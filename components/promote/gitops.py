"""GitOps promotion: commit the new model version to the environment's Helm values, with real git.

Everything happens in a throw-away clone; the remote changes only when a push succeeds, so a
failure leaves nothing half-done. A rejected push (someone else promoted meanwhile) is
retried on top of the new remote state. Re-promoting the version already in the values file
is a no-op. Before any commit the chart is rendered with real Helm and the manifests — the
ModerationModel against tiergate's CRD — are validated, so a broken values file is never pushed.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import yaml

from tiergate.errors import GitOpsError
from tiergate.paths import PROJECT_ROOT, project_path
from tiergate.profiles import PromoteSettings

log = logging.getLogger(__name__)
CHART_SOURCE = PROJECT_ROOT / "charts" / "tiergate-serving"


def git(args: list[str], cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise GitOpsError(f"git {' '.join(args[:2])} failed: {(result.stderr or result.stdout).strip()[:400]}")
    return result


def is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("git@")


def remote_url(settings: PromoteSettings) -> str:
    """The clone URL: local paths resolved against the project, HTTPS with the token from the environment."""
    if is_local(settings.repo_url):
        return str(project_path(settings.repo_url))
    token = os.environ.get(settings.token_env)
    parts = urlsplit(settings.repo_url)
    if token and parts.scheme == "https":
        return urlunsplit(
            parts._replace(
                netloc=f"x-access-token:{quote(token, safe='')}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
            )
        )
    return settings.repo_url


def ensure_local_repository(settings: PromoteSettings) -> None:
    """Create and seed a local bare GitOps repository (chart + empty environment) if it does not exist."""
    if not is_local(settings.repo_url):
        return
    bare = project_path(settings.repo_url)
    if (bare / "HEAD").is_file():
        return
    bare.parent.mkdir(parents=True, exist_ok=True)
    git(["init", "--bare", "--initial-branch", settings.branch, str(bare)])
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "seed"
        git(["clone", str(bare), str(work)])
        _identity(work, settings)
        shutil.copytree(CHART_SOURCE, work / settings.chart_path)
        (work / settings.values_path).parent.mkdir(parents=True, exist_ok=True)
        (work / settings.values_path).write_text("# Environment values; `tiergate promote` updates model.*\nmodel: {}\n")
        git(["add", "-A"], work)
        git(["commit", "-m", "seed GitOps repository with the tiergate-serving chart"], work)
        git(["push", "origin", f"HEAD:{settings.branch}"], work)
    log.info("created local GitOps repository %s", bare)


def sync_local_chart(work: Path, settings: PromoteSettings) -> bool:
    """A local GitOps repository is tiergate's own simulation of one (seeded by `ensure_local_repository`):
    its chart follows this tiergate's, staged in the promotion's commit, so `make run` keeps working after
    the chart changes. A remote repository's chart is its owners' to upgrade (README), never touched."""
    from tiergate.hashing import folder_digests

    if not is_local(settings.repo_url) or not (CHART_SOURCE / "Chart.yaml").is_file():
        return False  # a remote repository, or an installed tiergate (an image) that carries no chart to offer
    chart = work / settings.chart_path
    if chart.is_dir() and folder_digests(chart) == folder_digests(CHART_SOURCE):
        return False
    shutil.rmtree(chart, ignore_errors=True)
    shutil.copytree(CHART_SOURCE, chart)
    git(["add", "-A", settings.chart_path], work)
    log.info("%s: updated to this tiergate's chart", settings.chart_path)
    return True


def _identity(work: Path, settings: PromoteSettings) -> None:
    git(["config", "user.name", settings.author_name], work)
    git(["config", "user.email", settings.author_email], work)


def _clone(settings: PromoteSettings, scratch: Path) -> Path:
    work = scratch / "repo"
    git(["clone", "--branch", settings.branch, remote_url(settings), str(work)])
    _identity(work, settings)
    return work


def read_values(work: Path, settings: PromoteSettings) -> dict[str, Any]:
    path = work / settings.values_path
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def render_and_validate(work: Path, settings: PromoteSettings, values: dict[str, Any]) -> dict[str, str]:
    """Render the chart with real Helm (values.schema.json applies) and validate what comes out."""
    from helm_python import Chart, HelmError

    from tiergate.k8s_validation import validate_text

    chart_dir = work / settings.chart_path
    if not (chart_dir / "Chart.yaml").is_file():
        raise GitOpsError(f"no chart at {settings.chart_path} in the GitOps repository")
    try:
        rendered = Chart.load(str(chart_dir)).render(values, name="tiergate", namespace="tiergate")
    except HelmError as error:
        hint = (
            f" (is {settings.chart_path} in the GitOps repository older than this tiergate's chart? README: "
            "'Upgrading a GitOps repository from the InferenceService chart')"
        )
        raise GitOpsError(f"the chart refuses these values: {' '.join(str(error).split())}{hint}") from None
    for name, text in rendered.items():  # vendored CRDs: a missing schema is a ManifestError, never a skip
        if name.endswith((".yaml", ".yml")) and text.strip():
            validate_text(text)
    return rendered


Edit = Callable[[dict[str, Any]], dict[str, Any] | None]


def commit_and_push(settings: PromoteSettings, edit: Edit, message: str, branch_name: str | None = None) -> dict[str, Any]:
    """Clone, apply `edit` to the values (None = nothing to do), validate, commit, push; retry on a push race."""
    target = branch_name or settings.branch
    for attempt in range(1, settings.max_push_attempts + 1):
        with tempfile.TemporaryDirectory() as scratch:
            work = _clone(settings, Path(scratch))
            values = edit(read_values(work, settings))
            if values is None:
                return {"changed": False, "commit": git(["rev-parse", "HEAD"], work).stdout.strip(), "branch": settings.branch}
            chart_updated = sync_local_chart(work, settings)
            render_and_validate(work, settings, values)
            path = work / settings.values_path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
            git(["add", settings.values_path], work)
            if chart_updated:
                message += f"\n\n{settings.chart_path}: updated to this tiergate's chart (a local GitOps repository it seeded)"
            git(["commit", "-m", message], work)
            pushed = git(["push", "origin", f"HEAD:refs/heads/{target}"], work, check=False)
            if pushed.returncode == 0:
                commit = git(["rev-parse", "HEAD"], work).stdout.strip()
                log.info("pushed %s to %s (%s)", commit[:12], target, settings.repo_url)
                return {"changed": True, "commit": commit, "branch": target, "attempts": attempt}
            if "rejected" not in pushed.stderr and "fetch first" not in pushed.stderr and "non-fast-forward" not in pushed.stderr:
                raise GitOpsError(f"push to {target} failed: {pushed.stderr.strip()[:400]}")
            log.warning(
                "push rejected (attempt %d/%d): the branch moved; retrying on top of it", attempt, settings.max_push_attempts
            )
    raise GitOpsError(f"could not push to {target} after {settings.max_push_attempts} attempts (concurrent promotions?)")


def history(settings: PromoteSettings) -> list[dict[str, Any]]:
    """Every commit that changed the environment's values, newest first, with the version it set."""
    entries = []
    with tempfile.TemporaryDirectory() as scratch:
        work = _clone(settings, Path(scratch))
        log_lines = git(["log", "--format=%H%x09%cI%x09%s", "--", settings.values_path], work).stdout.splitlines()
        for line in log_lines:
            commit, date, subject = line.split("\t", 2)
            shown = git(["show", f"{commit}:{settings.values_path}"], work, check=False)
            model = ((yaml.safe_load(shown.stdout) or {}).get("model") or {}) if shown.returncode == 0 else {}
            entries.append(
                {
                    "commit": commit,
                    "date": date,
                    "subject": subject,
                    "version": model.get("version"),
                    "digest": model.get("digest"),
                    "storageUri": model.get("storageUri"),
                    "gateDigest": model.get("gateDigest"),
                }
            )
    return entries
