"""Leader election on a coordination.k8s.io Lease: with several replicas, one reconciles at a time.

The client-go protocol: the holder renews `renewTime` every `renew_s`; anyone may take the Lease once
`renewTime + leaseDurationSeconds` has passed. Every write is a replace guarded by resourceVersion,
so two candidates racing for an expired Lease cannot both win. A leader that fails to renew within
the lease duration stops leading before anyone else can start (it checks its own deadline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from tiergate.serving.operator.kube import LEASES, Conflict, Kube

log = logging.getLogger(__name__)


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        lease_s: int = 15,
        renew_s: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.lease_s, self.renew_s, self.clock = lease_s, renew_s, clock
        self._leading_until = 0.0  # monotonic deadline of the last successful renew

    @property
    def leading(self) -> bool:
        return time.monotonic() < self._leading_until

    def _spec(self, now: datetime, transitions: int, acquired: str | None) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_s,
            "acquireTime": acquired or _micro_time(now),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this identity holds the Lease now."""
        started = time.monotonic()
        now = self.clock()
        try:
            lease = self.kube.get(LEASES, self.namespace, self.name)
            if lease is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, 0, None),
                }
                self.kube.create(LEASES, self.namespace, body)
            else:
                spec = lease.get("spec") or {}
                holder = spec.get("holderIdentity")
                renewed = _parse(spec.get("renewTime"))
                duration = int(spec.get("leaseDurationSeconds") or self.lease_s)
                expired = renewed is None or now > renewed + timedelta(seconds=duration)
                if holder and holder != self.identity and not expired:
                    self._leading_until = 0.0
                    return False
                mine = holder == self.identity
                transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
                lease["spec"] = self._spec(now, transitions, spec.get("acquireTime") if mine else None)
                self.kube.replace(LEASES, self.namespace, self.name, lease)
        except Conflict:
            self._leading_until = 0.0
            return False
        except (ApiException, OSError) as error:
            log.warning("leader election: %s", getattr(error, "reason", error))
            return self.leading  # keep leading until our own deadline; the next renew may succeed
        self._leading_until = started + self.lease_s - self.renew_s  # stop before anyone may take over
        return True

    def release(self) -> None:
        """On a clean stop: let the next replica take over at once instead of after the lease duration."""
        if not self.leading:
            return
        try:
            lease = self.kube.get(LEASES, self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                self.kube.replace(LEASES, self.namespace, self.name, lease)
        except (ApiException, Conflict, OSError):
            pass
        self._leading_until = 0.0
