"""The tiergate KFP v2 pipeline: the same DAG compiles for the cluster and runs under kfp.local.

ExitHandler(run-summary):
  config-digest, list-categories → ParallelFor(generate) → Collected → merge → train ×3 (GPU,
  warm start) → export (GPU) → evaluate → If(gate passed): package → publish → promote ;
  Else: not-promoted.

Everything cluster-specific comes from the compile-time profile's `pipeline` section: images,
resources, the GPU node selector and tolerations, the Secrets each task reads (Anthropic key
for generation, object-store credentials for publish, the GitOps token for promote), the
generator's cache PVC and the retry policy of the tasks that talk to networks. Run-time choices
(profile, category subset, counts, base model) are pipeline parameters in the run form.

Caching is keyed on content: an uncached first task digests the config inside its image and
every cached step takes that digest as an input, so an edited taxonomy, profile or regression
vector invalidates them (tiergate.config_digest). publish and promote have side effects
outside KFP and are never served from cache.
"""

import functools
from collections.abc import Callable
from typing import Any

from kfp import dsl, kubernetes

from tiergate.components.evaluate.component import evaluate, not_promoted
from tiergate.components.export.component import export
from tiergate.components.generate.component import generate, import_public_data, list_categories
from tiergate.components.merge.component import import_feedback_data, merge
from tiergate.components.package.component import package
from tiergate.components.promote.component import promote
from tiergate.components.publish.component import publish
from tiergate.components.train.component import train
from tiergate.pipelines.bookkeeping import config_digest, run_summary
from tiergate.profiles import PipelineSettings, Profile

PIPELINE_NAME = "tiergate"
PIPELINE_DESCRIPTION = "Generate, train, gate and package a tiered multi-label moderation classifier."


def _resources(task: dsl.PipelineTask, settings: PipelineSettings, kind: str) -> dsl.PipelineTask:
    resources = settings.resources[kind]  # type: ignore[index]
    task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
    return task


def _gpu(task: dsl.PipelineTask, settings: PipelineSettings) -> dsl.PipelineTask:
    """GPU resources, and the profile's node selector and tolerations (only GPU tasks need GPU nodes)."""
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


def _networked(task: dsl.PipelineTask, settings: PipelineSettings) -> dsl.PipelineTask:
    """The profile's retry policy, for tasks whose failures are often transient (API, store, Git remote)."""
    retry = settings.network_retry
    if retry.num_retries:
        task.set_retry(
            num_retries=retry.num_retries,
            backoff_duration=retry.backoff_duration,
            backoff_factor=retry.backoff_factor,
            backoff_max_duration=retry.backoff_max_duration,
        )
    return task


def _named(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    task.set_display_name(name)
    return task


def build_pipeline(profile: Profile, default_profile: str = "production") -> Callable[..., Any]:
    """The pipeline function, with images and cluster settings from `profile.pipeline`.

    Values read from `profile` here are compile-time: inside the pipeline body `profile` is the
    run parameter (a name), so they are captured first.
    """
    settings = profile.pipeline
    cpu = functools.partial(dsl.component, base_image=settings.image_cpu, install_kfp_package=False)
    gpu = functools.partial(dsl.component, base_image=settings.image_gpu, install_kfp_package=False)
    list_op, generate_op, merge_op = cpu(list_categories), cpu(generate), cpu(merge)
    import_op, feedback_op = cpu(import_public_data), cpu(import_feedback_data)
    train_op, export_op = gpu(train), gpu(export)
    evaluate_op, not_promoted_op, package_op = cpu(evaluate), cpu(not_promoted), cpu(package)
    publish_op, promote_op = cpu(publish), cpu(promote)
    digest_op, summary_op = cpu(config_digest), cpu(run_summary)
    phases = list(profile.train.phases)
    api_key_env = profile.generator.api_key_env
    needs_api_key = profile.generator.kind != "offline"
    token_env = profile.promote.token_env
    needs_token = profile.promote.repo_url.startswith(("https://", "http://"))
    store = profile.publish.store
    pvc_mount_root = profile.publish.pvc_mount_root

    def _location_reader(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
        """A task reading a run-form location (public data, feedback): never cached (the files behind one name
        can change between runs), with the store's credentials or claim to read it."""
        _resources(_named(task, name), settings, "light")
        task.set_caching_options(False)
        _publish_credentials(task, settings, store, pvc_mount_root)
        return task

    @dsl.pipeline(name=PIPELINE_NAME, description=PIPELINE_DESCRIPTION)
    def tiergate(
        profile: str = default_profile,
        categories: str = "",
        counts: str = "",
        base_model: str = "",
        cache_dir: str = settings.cache_mount,
        model_version: str = "",
        public_data: str = "",
        previous_model: str = "",
        feedback_data: str = "",
    ) -> None:
        """Generate, train, gate and package a tiered multi-label moderation classifier.

        Args:
            profile: Profile name in config/profiles (or a YAML path in the image); gates live in the taxonomy, not here.
            categories: Comma-separated subset of the taxonomy's categories to generate; empty generates all.
            counts: Per-category count overrides, e.g. positives=100,hard_negatives=50; empty keeps the profile's.
            base_model: Base model to fine-tune (hub id or path); empty keeps the profile's train.base_model.
            cache_dir: Folder of the generator's response cache (the mounted cache PVC); empty disables the cache.
            model_version: Version name of the served model; empty uses the run's name.
            public_data: Folder, pvc://CLAIM/path, s3:// or gs:// URL of the public labelled sets
                (README "Public data sets"); empty trains on generated data only.
            previous_model: storageUri of the promoted model: it screens generated negatives and new models
                are compared with it; empty for a first model.
            feedback_data: Folder, pvc://CLAIM/path, s3:// or gs:// URL of a `tiergate feedback export` (README
                "Feedback store"): reviewed items whose labels win over generated and public ones; empty: none.
        """
        summary = _named(summary_op(profile=profile), "run summary")
        _resources(summary, settings, "light").set_caching_options(False)
        with dsl.ExitHandler(summary, name="tiergate-run"):
            digested = _named(digest_op(profile=profile), "config digest")
            _resources(digested, settings, "light").set_caching_options(False)  # always re-digest the config
            digest = digested.output
            listing = _named(list_op(profile=profile, categories=categories, config_digest=digest), "list categories")
            _resources(listing, settings, "light").set_caching_options(False)
            with dsl.ParallelFor(listing.output, parallelism=settings.generate_parallelism) as item:
                generated = generate_op(
                    profile=profile, category=item.category, cache_dir=cache_dir, counts=counts, config_digest=item.config_digest
                )
                _networked(_resources(_named(generated, "generate one category"), settings, "light"), settings)
                kubernetes.use_secret_as_env(
                    generated,
                    secret_name=settings.anthropic_secret,
                    secret_key_to_env={settings.anthropic_secret_key: api_key_env},
                    optional=not needs_api_key,
                )
                kubernetes.mount_pvc(generated, pvc_name=settings.cache_pvc, mount_path=settings.cache_mount)
            imported = _location_reader(
                import_op(profile=profile, public_data=public_data, config_digest=digest), "import public data"
            )
            feedback = _location_reader(
                feedback_op(profile=profile, feedback_data=feedback_data, config_digest=digest), "import feedback data"
            )
            merged = merge_op(
                profile=profile,
                generated=dsl.Collected(generated.outputs["generated"]),
                public=imported.outputs["public"],
                feedback=feedback.outputs["feedback"],
                previous_model=previous_model,
                config_digest=digest,
            )
            _resources(_named(merged, "merge datasets"), settings, "light")
            _publish_credentials(merged, settings, store, pvc_mount_root)  # the previous model is read from the store

            previous = None
            for phase in phases:
                arguments: dict[str, Any] = {
                    "profile": profile,
                    "phase": phase,
                    "base_model": base_model,
                    "data": merged.outputs["merged"],
                    "config_digest": digest,
                }
                if previous is not None:
                    arguments["init"] = previous.outputs["checkpoint"]
                previous = _named(_gpu(train_op(**arguments), settings), f"train {phase}")
            assert previous is not None
            exported = export_op(profile=profile, checkpoint=previous.outputs["checkpoint"], data=merged.outputs["merged"])
            _named(_gpu(exported, settings), "export ONNX")
            evaluation = evaluate_op(
                profile=profile,
                onnx_model=exported.outputs["onnx_model"],
                data=merged.outputs["merged"],
                public_data=public_data,
                previous_model=previous_model,
            )
            _resources(_named(evaluation, "evaluate and gate"), settings, "light")
            _publish_credentials(evaluation, settings, store, pvc_mount_root)  # public data and the previous model
            with dsl.If(evaluation.outputs["gate_passed"] == True, name="gate-passed"):  # noqa: E712 (KFP condition syntax)
                packaged = package_op(
                    profile=profile,
                    onnx_model=exported.outputs["onnx_model"],
                    evaluation=evaluation.outputs["evaluation"],
                    model_version=model_version,
                    run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                )
                _resources(_named(packaged, "package Triton repository"), settings, "light")
                published = publish_op(profile=profile, model_repository=packaged.outputs["model_repository"])
                _networked(_resources(_named(published, "publish to the model store"), settings, "light"), settings)
                published.set_caching_options(False)  # writes to the store: a cached "success" would skip the upload
                _publish_credentials(published, settings, store, pvc_mount_root)
                promoted = promote_op(
                    profile=profile,
                    evaluation=evaluation.outputs["evaluation"],
                    model_repository=packaged.outputs["model_repository"],
                    uri=published.outputs["uri"],
                    digest=published.outputs["digest"],
                    version=published.outputs["version"],
                    run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                )
                _networked(_resources(_named(promoted, "promote (GitOps commit)"), settings, "light"), settings)
                promoted.set_caching_options(False)  # a commit to the GitOps repository, never replayed from cache
                kubernetes.use_secret_as_env(
                    promoted,
                    secret_name=settings.gitops_secret,
                    secret_key_to_env={settings.gitops_secret_key: token_env},
                    optional=not needs_token,
                )
            with dsl.Else(name="gate-failed"):
                refused = not_promoted_op(evaluation=evaluation.outputs["evaluation"])
                _resources(_named(refused, "not promoted"), settings, "light")

    return tiergate


def _publish_credentials(task: dsl.PipelineTask, settings: PipelineSettings, store: str, pvc_mount_root: str) -> None:
    """A pvc:// store is mounted where publish looks for it; any other store gets its credentials Secret."""
    if store.startswith("pvc://"):
        claim = store.removeprefix("pvc://").split("/")[0]
        kubernetes.mount_pvc(task, pvc_name=claim, mount_path=f"{pvc_mount_root.rstrip('/')}/{claim}")
        return
    kubernetes.use_secret_as_env(
        task, secret_name=settings.object_store_secret, secret_key_to_env=settings.object_store_secret_env
    )
