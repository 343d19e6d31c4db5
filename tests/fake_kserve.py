"""KServe's InferenceService controller, as far as a rollout sees it, over `tests.fake_kube.FakeKube`.

What the operator relies on, from KServe's canary docs: every spec change makes a new revision; with
`canaryTrafficPercent: N` the newest revision gets N % and the previously rolled-out one the rest;
without the field the newest gets 100 % and becomes the rolled-out revision; 0 sends everything back
to the previous one. With tag routing the newest revision answers on its own `latest` URL. A
revision is ready when a real server for its storageUri was registered (`backends`): the analysis
then talks to a real Triton; a storageUri with no server never gets ready.

`splits` records every traffic split written, so a test can assert that a rejected version never
carried more than its canary share.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.fake_kube import FakeKube

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


@dataclass
class _Service:
    revisions: list[tuple[str, str]] = field(default_factory=list)  # (revision name, storageUri)
    rolled_out: str | None = None  # the revision that took 100 % last
    seen_generation: int = 0


class FakeKServe:
    def __init__(self, kube: FakeKube, backends: dict[str, str], ready_delay_s: float = 0.2):
        self.kube, self.backends, self.ready_delay_s = kube, backends, ready_delay_s
        self.splits: list[dict[str, int]] = []  # storageUri -> percent, in the order KServe applied them
        self._services: dict[tuple[str, str], _Service] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fake-kserve", daemon=True)

    def __enter__(self) -> FakeKServe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def storage_of(self, namespace: str, name: str, revision: str) -> str:
        return dict(self._services[(namespace, name)].revisions)[revision]

    def _loop(self) -> None:
        while not self._stop.wait(self.ready_delay_s):
            self.sync()

    def sync(self) -> None:
        """One pass over every InferenceService (tests that step the operator by hand call this, no thread)."""
        for isvc in self.kube.list(GROUP, VERSION, PLURAL):
            self._reconcile(isvc)

    def _reconcile(self, isvc: dict[str, Any]) -> None:
        metadata = isvc["metadata"]
        key = (metadata["namespace"], metadata["name"])
        state = self._services.setdefault(key, _Service())
        generation = int(metadata.get("generation") or 1)
        if generation == state.seen_generation:
            return
        predictor = isvc["spec"]["predictor"]
        storage = predictor["model"]["storageUri"]
        if not state.revisions or state.revisions[-1][1] != storage:
            state.revisions.append((f"{metadata['name']}-predictor-{len(state.revisions) + 1:05d}", storage))
        latest, latest_storage = state.revisions[-1]
        backend = self.backends.get(latest_storage)
        state.seen_generation = generation
        if backend is None:  # the storage initializer cannot load it: the revision never becomes ready
            self._write(isvc, generation, latest, None, [], "RevisionMissing: storage initializer failed")
            return
        canary = predictor.get("canaryTrafficPercent")
        previous = state.rolled_out if state.rolled_out != latest else None
        if canary is None or previous is None:
            traffic = [{"revisionName": latest, "percent": 100, "latestRevision": True, "tag": "latest", "url": backend}]
            state.rolled_out = latest
        else:
            traffic = [
                {"revisionName": previous, "percent": 100 - int(canary), "latestRevision": False, "tag": "prev"},
                {"revisionName": latest, "percent": int(canary), "latestRevision": True, "tag": "latest", "url": backend},
            ]
        self.splits.append(
            {self.storage_of(*key, target["revisionName"]): target["percent"] for target in traffic if target["percent"]}
        )
        self._write(isvc, generation, latest, latest, traffic, "")

    def _write(
        self, isvc: dict[str, Any], generation: int, created: str, ready: str | None, traffic: list[dict[str, Any]], failure: str
    ) -> None:
        state = "True" if ready else "False"
        conditions = [
            {"type": "PredictorReady", "status": state, **({"message": failure} if failure else {})},
            {"type": "Ready", "status": state, **({"message": failure} if failure else {})},
        ]
        status = {
            "observedGeneration": generation,
            "url": f"http://{isvc['metadata']['name']}.{isvc['metadata']['namespace']}.example.com",
            "conditions": conditions,
            "components": {
                "predictor": {
                    "latestCreatedRevision": created,
                    "latestReadyRevision": ready,
                    "traffic": traffic,
                }
            },
        }
        with contextlib.suppress(Exception):  # deleted meanwhile
            self.kube.patch_status(GROUP, VERSION, PLURAL, isvc["metadata"]["namespace"], isvc["metadata"]["name"], status)
