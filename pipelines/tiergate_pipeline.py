"""The tiergate KFP v2 pipeline: the same DAG compiles for the cluster and runs under kfp.local.

taxonomy → ParallelFor(generate) → Collected → merge → train ×3 (GPU, warm start) → export (GPU)
→ evaluate → If(gate passed): package → (publish → promote) ; Else: not_promoted.

Cluster settings (images, accelerator, resources, node selector, tolerations, secret, cache PVC)
come from the profile's `pipeline` section at compile time; run-time choices (profile, category
subset, base model) are pipeline parameters in the dashboard's run form.
"""

import functools
from collections.abc import Callable
from typing import Any

from kfp import dsl, kubernetes

from tiergate.components.evaluate.component import evaluate, not_promoted
from tiergate.components.export.component import export
from tiergate.components.generate.component import generate, list_categories
from tiergate.components.merge.component import merge
from tiergate.components.package.component import package
from tiergate.components.promote.component import promote
from tiergate.components.publish.component import publish
from tiergate.components.train.component import train
from tiergate.profiles import PipelineSettings, Profile

PIPELINE_NAME = "tiergate"


def _resources(task: dsl.PipelineTask, settings: PipelineSettings, kind: str) -> dsl.PipelineTask:
    resources = settings.resources[kind]  # type: ignore[index]
    task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
    return task


def _gpu(task: dsl.PipelineTask, settings: PipelineSettings) -> dsl.PipelineTask:
    _resources(task, settings, "gpu")
    task.set_accelerator_type(settings.accelerator_type).set_accelerator_limit(settings.accelerator_limit)
    for key, value in sorted(settings.node_selector.items()):
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in settings.tolerations:
        kubernetes.add_toleration(
            task,
            key=toleration.get("key"),
            operator=toleration.get("operator", "Equal"),
            value=toleration.get("value"),
            effect=toleration.get("effect"),
        )
    return task


def build_pipeline(profile: Profile, default_profile: str = "production") -> Callable[..., Any]:
    """The pipeline function, with images and cluster settings from `profile.pipeline`."""
    settings = profile.pipeline
    cpu = functools.partial(dsl.component, base_image=settings.image_cpu, install_kfp_package=False)
    gpu = functools.partial(dsl.component, base_image=settings.image_gpu, install_kfp_package=False)
    list_op, generate_op, merge_op = cpu(list_categories), cpu(generate), cpu(merge)
    train_op, export_op = gpu(train), gpu(export)
    evaluate_op, not_promoted_op, package_op = cpu(evaluate), cpu(not_promoted), cpu(package)
    publish_op, promote_op = cpu(publish), cpu(promote)
    phases = list(profile.train.phases)
    token_env = profile.promote.token_env  # captured here: inside the pipeline, `profile` is the run parameter

    @dsl.pipeline(name=PIPELINE_NAME, description="Generate, train, gate and package a tiered multi-label moderation classifier.")
    def tiergate(
        profile: str = default_profile,
        categories: str = "",
        counts: str = "",
        base_model: str = "",
        cache_dir: str = settings.cache_mount,
        model_version: str = "",
    ) -> None:
        """profile: config/profiles name · categories: comma-separated subset (empty = all) · counts: per-category
        overrides, e.g. positives=100,hard_negatives=50 (empty = profile's) · base_model: override (empty = profile's)
        · cache_dir: generator response cache · model_version: served version (empty = run id)."""
        listing = _resources(list_op(profile=profile, categories=categories), settings, "light")
        listing.set_caching_options(False)
        with dsl.ParallelFor(listing.output, parallelism=settings.generate_parallelism) as category:
            generated = _resources(
                generate_op(profile=profile, category=category, cache_dir=cache_dir, counts=counts), settings, "light"
            )
            kubernetes.use_secret_as_env(
                generated,
                secret_name=settings.anthropic_secret,
                secret_key_to_env={settings.anthropic_secret_key: "ANTHROPIC_API_KEY"},
                optional=True,
            )
            kubernetes.mount_pvc(generated, pvc_name=settings.cache_pvc, mount_path=settings.cache_mount)
        merged = _resources(merge_op(profile=profile, generated=dsl.Collected(generated.outputs["generated"])), settings, "light")

        previous = None
        for phase in phases:
            arguments: dict[str, Any] = {
                "profile": profile,
                "phase": phase,
                "base_model": base_model,
                "data": merged.outputs["merged"],
            }
            if previous is not None:
                arguments["init"] = previous.outputs["checkpoint"]
            previous = _gpu(train_op(**arguments), settings)
            previous.set_display_name(f"train-{phase}")
        assert previous is not None
        exported = _gpu(
            export_op(profile=profile, checkpoint=previous.outputs["checkpoint"], data=merged.outputs["merged"]), settings
        )
        evaluation = _resources(
            evaluate_op(profile=profile, onnx_model=exported.outputs["onnx_model"], data=merged.outputs["merged"]),
            settings,
            "light",
        )
        with dsl.If(evaluation.outputs["gate_passed"] == True, name="gate-passed"):  # noqa: E712 (KFP condition syntax)
            packaged = _resources(
                package_op(
                    profile=profile,
                    onnx_model=exported.outputs["onnx_model"],
                    evaluation=evaluation.outputs["evaluation"],
                    model_version=model_version,
                    run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                ),
                settings,
                "light",
            )
            published = _resources(
                publish_op(profile=profile, model_repository=packaged.outputs["model_repository"]), settings, "light"
            )
            promoted = promote_op(
                profile=profile,
                evaluation=evaluation.outputs["evaluation"],
                model_repository=packaged.outputs["model_repository"],
                uri=published.outputs["uri"],
                digest=published.outputs["digest"],
                version=published.outputs["version"],
                run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            )
            _resources(promoted, settings, "light").set_caching_options(False)
            kubernetes.use_secret_as_env(
                promoted,
                secret_name=settings.gitops_secret,
                secret_key_to_env={settings.gitops_secret_key: token_env},
                optional=True,
            )
        with dsl.Else(name="gate-failed"):
            _resources(not_promoted_op(evaluation=evaluation.outputs["evaluation"]), settings, "light")

    return tiergate
