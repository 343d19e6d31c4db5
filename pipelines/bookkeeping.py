"""The pipeline's two tasks that are not steps: the config digest at the start, the run summary at the exit.

`config_digest` (never cached) digests the config inside its image; every cached step takes
the digest as an input, so KFP's cache is keyed on the config's content and an edited
taxonomy, profile or regression vector is never answered from cache (tiergate.config_digest).
It is its own task rather than a second output of list-categories because kfp.local cannot
loop over one output of a task that has several.

`run_summary` is the ExitHandler's task: a failed KFP run otherwise leaves its cause in one
pod's log among forty. It runs after everything else (also under kfp.local), gets the run's
final status from the backend, logs one line and writes a small JSON artifact — the first
thing to read when a nightly run failed.
"""

from kfp.dsl import Artifact, Output, PipelineTaskFinalStatus


def config_digest(profile: str) -> str:
    """sha256 of the taxonomy, resolved profile, regression suites and vocabulary in this image."""
    from tiergate.config_digest import run_config_digest
    from tiergate.profiles import load_profile
    from tiergate.taxonomy import load_taxonomy

    return run_config_digest(load_taxonomy(), load_profile(profile))


def run_summary(status: PipelineTaskFinalStatus, profile: str, summary: Output[Artifact]) -> str:
    """Record the run's final state, failing task and error as JSON; return the state."""
    from tiergate.pipelines.bookkeeping import write_summary

    return write_summary(
        summary.path,
        {
            "state": status.state,
            "pipeline_job": status.pipeline_job_resource_name,
            "pipeline_task": status.pipeline_task_name,
            "error_code": status.error_code,
            "error_message": status.error_message,
        },
        profile,
    )


def write_summary(path: str, status: dict[str, object], profile: str) -> str:
    """Write the summary JSON to `path` and log it in one line (an error line when the run did not succeed)."""
    import datetime
    import logging
    from pathlib import Path

    from tiergate.hashing import write_json
    from tiergate.progress import setup_logging

    setup_logging()
    state = str(status.get("state") or "UNKNOWN")
    record = {
        **status,
        "state": state,
        "profile": profile,
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    write_json(Path(path), record)
    log = logging.getLogger("tiergate.run_summary")
    if state == "SUCCEEDED":
        log.info("run %s succeeded (profile %s)", record.get("pipeline_job"), profile)
    else:
        message = record.get("error_message") or "no message"
        log.error("run %s ended %s (profile %s): %s", record.get("pipeline_job"), state, profile, message)
    return state
