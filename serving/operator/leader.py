"""Leader election on a coordination.k8s.io Lease: with several replicas, one reconciles at a time.

The client-go protocol: the holder renews `renewTime` every `renew_s`; a candidate may take the Lease
once it has seen the same record, unrenewed, for `leaseDurationSeconds` on its *own* monotonic clock —
never by comparing the record's timestamps with its wall clock, so replicas with skewed clocks cannot
both lead or wait an hour. Every write is a replace guarded by resourceVersion, so two candidates
racing for an expired Lease cannot both win. A leader that fails to renew within the lease duration
stops leading before anyone else can start (it checks its own deadline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tiergate.serving.operator.kube import LEASES, Conflict, Kube

log = logging.getLogger(__name__)


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.lease_s, self.renew_s, self.clock, self.monotonic = lease_s, renew_s, clock, monotonic
        self._leading_until = 0.0  # monotonic deadline of the last successful renew
        self._observed: tuple[Any, ...] | None = None  # the other holder's record as last seen
        self._observed_at = 0.0  # when (our monotonic clock) it was first seen unchanged

    @property
    def leading(self) -> bool:
        return self.monotonic() < self._leading_until

    def _expired(self, spec: dict[str, Any]) -> bool:
        """Has this record gone unrenewed for its duration, as *we* measure time?"""
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.monotonic()
        duration = spec.get("leaseDurationSeconds")
        duration = duration if isinstance(duration, int) and duration > 0 else self.lease_s
        return self.monotonic() - self._observed_at > duration

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
        started = self.monotonic()
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
                raw = lease.get("spec")
                spec: dict[str, Any] = raw if isinstance(raw, dict) else {}
                holder = spec.get("holderIdentity")
                if holder and holder != self.identity and not self._expired(spec):
                    self._leading_until = 0.0
                    return False
                mine = holder == self.identity
                previous = spec.get("leaseTransitions")
                transitions = (previous if isinstance(previous, int) else 0) + (0 if mine else 1)
                lease["spec"] = self._spec(now, transitions, spec.get("acquireTime") if mine else None)
                self.kube.replace(LEASES, self.namespace, self.name, lease)
        except Conflict:
            self._leading_until = 0.0
            return False
        except Exception as error:  # API down (urllib3 errors too), an odd Lease: keep trying, never die
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
        except Exception:  # best effort on the way out; the Lease expires anyway
            pass
        self._leading_until = 0.0
