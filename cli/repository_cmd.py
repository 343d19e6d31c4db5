"""`tiergate repository verify|fetch`: the load-side check of a model repository, on a folder or in the store."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tiergate.cli.options import ProfileOption

app = typer.Typer(help="Verify a model repository, or fetch and verify one before serving it.", no_args_is_help=True)
DigestOption = Annotated[
    str | None,
    typer.Option(
        "--digest",
        envvar="TIERGATE_EXPECTED_DIGEST",
        help="The repository digest it must have (the chart sets it from model.digest).",
    ),
]


@app.command("verify")
def verify(
    location: Annotated[str, typer.Argument(help="A local folder, or a store URI (pvc://, s3://, file://).")],
    command: Annotated[
        list[str] | None, typer.Argument(help="After `--`: a command to exec once verified (e.g. tritonserver ...).")
    ] = None,
    digest: DigestOption = None,
    profile: ProfileOption = "local",
) -> None:
    """Check files, manifest, gate record and judged bytes; exit 2 with one line naming the first mismatch.

    As a container entrypoint, `tiergate repository verify /mnt/models -- tritonserver ...` replaces
    itself with the server only when the repository verifies: a mismatch never serves, and the pod
    never becomes ready (the chart's ServingRuntime runs Triton this way).
    """
    from tiergate.profiles import load_profile
    from tiergate.store import locate
    from tiergate.trust import verify_repository

    filesystem, path = locate(location, load_profile(profile).publish)
    verified = verify_repository(filesystem, path, digest, where=location)
    manifest = verified.manifest
    typer.echo(
        f"verified: {manifest.model_name} {manifest.model_version} digest {manifest.digest[:12]}, "
        f"{len(manifest.files)} files, gate {verified.gate.decision} ({verified.gate.digest()[:12]})"
    )
    if command:
        sys.stdout.flush()
        os.execvp(command[0], command)


@app.command("fetch")
def fetch(
    source: Annotated[str, typer.Argument(help="storageUri of the version (e.g. s3://models/tiergate/v1/<digest>).")],
    destination: Annotated[Path, typer.Argument(help="Folder Triton loads from (KServe: /mnt/models).")],
    digest: DigestOption = None,
    profile: ProfileOption = "local",
) -> None:
    """Download and verify before anything loads it (KServe storage-initializer contract: SRC DEST)."""
    from tiergate.profiles import load_profile
    from tiergate.store import fetch_repository

    verified = fetch_repository(source, destination, load_profile(profile).publish, digest)
    typer.echo(f"fetched and verified {verified.manifest.model_version} ({verified.manifest.digest[:12]}) into {destination}")
