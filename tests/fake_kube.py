"""A fake Kubernetes API server on loopback HTTP, for testing the operator's real client loop.

No API server can run on the test machines, and mocking the `kubernetes` client would test our
guess of its calls rather than the calls: this fake speaks the wire protocol that the pinned client
(kubernetes==30.1.0) uses, so operator code runs unmodified against `FakeKube.api_client()`.

It follows the API conventions an operator's correctness depends on: one global resourceVersion with
optimistic concurrency (409 Conflict), the status subresource (main writes ignore `.status`, status
writes change only `.status`), `metadata.generation` bumped only by spec changes, no-op updates that
keep the resourceVersion, finalizers and deletionTimestamp, owner-reference garbage collection,
label/field selectors, merge / JSON / strategic (as merge) patches, and watches with resume from a
resourceVersion, 410 Expired past the retained history and `timeoutSeconds`.

Not implemented: admission, schema validation, RBAC enforcement (`calls` records the RBAC verb of
each request so a test can compare it with a Role), server-side apply (415), dryRun, pagination
(`limit`/`continue` are ignored; every list is complete), collection deletes, bookmarks, version
conversion (all versions of a group/plural share one store), namespace existence checks. Strategic
merge patches are applied as merge patches (lists replace, no patchMergeKey). Garbage collection is
background-style and immediate: a dependent goes once none of its owners exists; Foreground deletion
and pruning of dangling ownerReferences are not modelled. As on a real cluster, a PUT of a custom
resource without metadata.resourceVersion is refused (422); core kinds accept it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import random
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
from aiohttp import web

Json = dict[str, Any]
Key = tuple[str, str]  # (namespace or "", name)


@dataclass(frozen=True)
class Resource:
    """One served resource type; `has_status` gives it a status subresource like a CRD with `subresources.status`."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    has_status: bool = True
    # Custom resources refuse a PUT without metadata.resourceVersion (422); core kinds accept it.
    unconditional_update: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def store(self) -> tuple[str, str]:
        """Versions of one group/plural share their objects, as they do in etcd."""
        return (self.group, self.plural)

    def describe(self, name: str) -> str:
        """How the real server names an object in error messages: `plural.group "name"`."""
        qualified = f"{self.plural}.{self.group}" if self.group else self.plural
        return f'{qualified} "{name}"'


DEFAULT_RESOURCES: tuple[Resource, ...] = (
    Resource("tiergate.io", "v1alpha1", "moderationmodels", "ModerationModel", unconditional_update=False),
    Resource("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService", unconditional_update=False),
    Resource("", "v1", "events", "Event", has_status=False),
    Resource("events.k8s.io", "v1", "events", "Event", has_status=False),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", has_status=False),
    Resource("", "v1", "secrets", "Secret", has_status=False),
    Resource("", "v1", "configmaps", "ConfigMap", has_status=False),
)

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's: no vowels, no look-alikes
SERVER_METADATA = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
)
VERSION_INFO = {  # every field: the client's VersionInfo model refuses a missing one
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-fake",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2024-04-17T00:00:00Z",
    "goVersion": "go1.22.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
OMIT_WHEN_EMPTY = ("finalizers", "labels", "annotations", "ownerReferences")


class KubeError(Exception):
    """An API failure raised anywhere in a request; answered as a `Status` object like the real server's."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: Json | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> Json:
        body: Json = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": str(self),
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- patches -------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes a key, anything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: Any) -> list[str]:
    """RFC 6901 tokens of a JSON pointer (`~1` is `/`, `~0` is `~`)."""
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise KubeError(422, f"invalid JSON pointer {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path.split("/")[1:]]


def _index(items: list[Any], token: str, *, append: bool) -> int:
    """A list index from a pointer token; `-` (and len) only where appending is allowed."""
    if append and token == "-":
        return len(items)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise KubeError(422, f"invalid array index {token!r}")
    index = int(token)
    if index > len(items) or (index == len(items) and not append):
        raise KubeError(422, f"array index {index} out of range")
    return index


def _resolve(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, append=False)]
        else:
            raise KubeError(422, f"path /{'/'.join(tokens)} does not exist")
    return node


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1])
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], append=True), value)
    else:
        raise KubeError(422, f"cannot add below a scalar at /{'/'.join(tokens)}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise KubeError(422, "cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1])
    if isinstance(parent, dict) and tokens[-1] in parent:
        return parent.pop(tokens[-1])
    if isinstance(parent, list):
        return parent.pop(_index(parent, tokens[-1], append=False))
    raise KubeError(422, f"path /{'/'.join(tokens)} does not exist")


def _operation(doc: Any, op: Any) -> Any:
    """Apply one RFC 6902 operation in place; returns the (possibly new root) document."""
    if not isinstance(op, dict) or op.get("op") not in ("add", "remove", "replace", "move", "copy", "test"):
        raise KubeError(422, f"unsupported JSON patch operation {op!r}")
    kind, tokens = op["op"], _pointer(op.get("path"))
    if kind in ("add", "replace", "test") and "value" not in op:
        raise KubeError(422, f"JSON patch {kind} needs a value")
    if kind == "add":
        return _add(doc, tokens, copy.deepcopy(op["value"]))
    if kind == "remove":
        _remove(doc, tokens)
        return doc
    if kind == "replace":
        _resolve(doc, tokens)  # must exist
        if not tokens:
            return copy.deepcopy(op["value"])
        _remove(doc, tokens)
        return _add(doc, tokens, copy.deepcopy(op["value"]))
    if kind == "test":
        if _resolve(doc, tokens) != op["value"]:
            raise KubeError(422, f"testing value {op.get('path')} failed")
        return doc
    source = _pointer(op.get("from"))
    value = copy.deepcopy(_resolve(doc, source))
    if kind == "move":
        _remove(doc, source)
    return _add(doc, tokens, value)


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902, all or nothing: the document is copied, so a failing operation leaves the original untouched."""
    if not isinstance(operations, list):
        raise KubeError(400, "a JSON patch must be a list of operations")
    result = copy.deepcopy(doc)
    for op in operations:
        result = _operation(result, op)
    return result


# --- selectors -----------------------------------------------------------------------------------

Predicate = Callable[[Json], bool]
_SET_REQUIREMENT = re.compile(r"^([^\s!=()]+)\s+(in|notin)\s+\((.*)\)$")


def _split_requirements(text: str) -> list[str]:
    """Commas separate requirements except inside `in (a,b)` value sets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def _label_requirement(text: str) -> Callable[[dict[str, str]], bool]:
    matched = _SET_REQUIREMENT.match(text)
    if matched:
        key, op = matched.group(1), matched.group(2)
        values = {value.strip() for value in matched.group(3).split(",") if value.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if "!=" in text:
        key, value = (part.strip() for part in text.split("!=", 1))
        return lambda labels: labels.get(key) != value
    if "=" in text:
        key, value = (part.strip() for part in re.split(r"==?", text, maxsplit=1))
        return lambda labels: labels.get(key) == value
    if text.startswith("!"):
        return lambda labels: text[1:].strip() not in labels
    return lambda labels: text in labels


def label_selector(text: str) -> Predicate:
    """Equality (`a=b`, `a==b`, `a!=b`), existence (`a`, `!a`) and set (`a in (x,y)`, `a notin (x)`) selectors."""
    requirements = [_label_requirement(part) for part in _split_requirements(text)]
    return lambda obj: all(req(obj.get("metadata", {}).get("labels") or {}) for req in requirements)


def _field_value(obj: Json, path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def field_selector(text: str) -> Predicate:
    """`path=value`, `path==value`, `path!=value` on any dotted field (the real server allows fewer per kind)."""
    checks: list[tuple[str, str, bool]] = []
    for part in _split_requirements(text):
        negate = "!=" in part
        path, value = (side.strip() for side in re.split(r"!=|==?", part, maxsplit=1))
        checks.append((path, value, negate))
    return lambda obj: all((_field_value(obj, path) == value) != negate for path, value, negate in checks)


# --- the server ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request as RBAC sees it: `verb` is get/list/watch/create/update/patch/delete (or "" for discovery)."""

    method: str
    path: str
    query: dict[str, str]
    verb: str = ""
    group: str = ""
    resource: str = ""  # plural, or "plural/status"
    namespace: str | None = None
    content_type: str = ""  # which patch flavour a PATCH used


@dataclass(frozen=True)
class Change:
    """One committed write, retained for watch resumption; `old` lets a selector watch see objects leave it."""

    rv: int
    store: tuple[str, str]
    type: str  # ADDED | MODIFIED | DELETED
    obj: Json
    old: Json | None


@dataclass(eq=False)
class _Watcher:
    resource: Resource
    namespace: str | None
    matches: Predicate
    queue: asyncio.Queue[str | None]


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    times: int


@dataclass(frozen=True)
class _Target:
    resource: Resource
    namespace: str | None
    name: str | None
    status: bool  # the /status subresource


def _event_for(watcher: _Watcher, change: Change) -> Json | None:
    """What a watch with this scope and selector sees of a change: an object leaving the selector is DELETED."""
    obj = change.obj
    if change.store != watcher.resource.store:
        return None
    if watcher.namespace is not None and obj["metadata"].get("namespace") != watcher.namespace:
        return None
    now = watcher.matches(obj)
    if change.type == "DELETED":
        return {"type": "DELETED", "object": obj} if now else None
    was = change.old is not None and watcher.matches(change.old)
    if now:
        return {"type": "MODIFIED" if was else "ADDED", "object": obj}
    return {"type": "DELETED", "object": obj} if was else None


def _spec_of(resource: Resource, obj: Json) -> Json:
    """Everything that counts for metadata.generation: all but metadata (and status, if a subresource)."""
    skipped = {"metadata", "status"} if resource.has_status else {"metadata"}
    return {key: value for key, value in obj.items() if key not in skipped}


def _tidy_metadata(meta: Json) -> None:
    """Empty lists and maps are omitted on the wire, so `finalizers: []` reads back as absent."""
    for key in OMIT_WHEN_EMPTY:
        if key in meta and not meta[key]:
            del meta[key]


class FakeKube:
    """An in-memory API server; HTTP on 127.0.0.1 in a background thread, plus direct thread-safe helpers."""

    def __init__(self, resources: Iterable[Resource] = DEFAULT_RESOURCES, *, history_limit: int = 1000) -> None:
        self.resources = {(r.group, r.version, r.plural): r for r in resources}
        self._by_store = {r.store: r for r in reversed(list(self.resources.values()))}
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str], dict[Key, Json]] = {}
        self._rv = 0
        self._history: deque[Change] = deque()
        self._history_limit = history_limit
        self._compacted_rv = 0  # watches from an older resourceVersion get 410 Expired
        self._watchers: set[_Watcher] = set()
        self._faults: list[_Fault] = []
        self.calls: list[Call] = []
        self.watch_timeout_s: float | None = None  # the server's own cap on a watch, like --min-request-timeout
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._closing = False

    # --- lifecycle ---

    def start(self) -> FakeKube:
        """Serve on an ephemeral loopback port; `url` is set when this returns. Idempotent while running."""
        if self._thread is not None:
            return self
        self._closing = False
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name="fake-kube", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"fake API server did not start: {failure}")
        return self

    def stop(self) -> None:
        """End open watches (clients see a clean end of stream), close the listener and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = self._loop = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client_configuration(self) -> kubernetes.client.Configuration:
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return configuration

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.client.ApiClient(self.client_configuration())

    def write_kubeconfig(self, path: Path, namespace: str | None = None) -> Path:
        """A kubeconfig file naming this server (no credentials), for a process such as `tiergate operator run`."""
        context: Json = {"cluster": "fake", "user": "tester", **({"namespace": namespace} if namespace else {})}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {}}],
            "contexts": [{"name": "fake", "context": context}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config))  # JSON is YAML
        path.chmod(0o644)  # readable by a container's non-root user
        return path

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as error:  # reported by start()
            failure.append(error)
            ready.set()
            loop.close()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=16 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that drops a watch ends its handler at once instead of at the next event.
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _shutdown(self) -> None:
        with self._lock:
            self._closing = True
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    # --- direct helpers (tests, simulated controllers) ---

    def resource(self, group: str, version: str, plural: str) -> Resource:
        try:
            return self.resources[(group, version, plural)]
        except KeyError:
            raise KubeError(404, "the server could not find the requested resource") from None

    def _resource_of(self, obj: Json) -> Resource:
        group, _, version = obj.get("apiVersion", "").rpartition("/")
        for resource in self.resources.values():
            if (resource.group, resource.version, resource.kind) == (group, version, obj.get("kind")):
                return resource
        raise KubeError(404, f"no resource for {obj.get('apiVersion')} {obj.get('kind')}")

    def get(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> Json | None:
        with self._lock:
            obj = self._table(self.resource(group, version, plural)).get((namespace or "", name))
            return copy.deepcopy(obj)

    def list(self, group: str, version: str, plural: str, namespace: str | None = None) -> list[Json]:
        with self._lock:
            return self._select(self.resource(group, version, plural), namespace, lambda _: True)

    def put(self, obj: Json) -> Json:
        """Create or replace as-is (status included, no conflict check): the state a test wants, but with real rv/uid."""
        resource = self._resource_of(obj)
        body = copy.deepcopy(obj)
        meta = body.setdefault("metadata", {})
        with self._lock:
            key = (meta.get("namespace", "") if resource.namespaced else "", meta["name"])
            current = self._table(resource).get(key)
            if current is None:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", now_rfc3339())
                meta.setdefault("generation", 1)
                return self._commit(resource, key, body, None)
            for server_field in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
                if server_field in current["metadata"]:
                    meta.setdefault(server_field, current["metadata"][server_field])
            if _spec_of(resource, body) != _spec_of(resource, current):
                meta["generation"] = current["metadata"].get("generation", 0) + 1
            if "deletionTimestamp" in meta and not meta.get("finalizers"):
                return self._remove(resource, key, body, orphan=False)  # the last finalizer is gone
            return self._commit(resource, key, body, current)

    def patch_status(self, group: str, version: str, plural: str, namespace: str | None, name: str, status: Json) -> Json:
        """A foreign controller's status write: merge-patches `.status` (None deletes a key), unconditionally.

        Raises KubeError (code 404) when the object does not exist."""
        resource = self.resource(group, version, plural)
        with self._lock:
            current = self._require(resource, namespace, name)
            new = copy.deepcopy(current)
            new["status"] = merge_patch(current.get("status") or {}, status)
            return self._write(resource, current, new)

    def events(self, namespace: str | None = None) -> list[Json]:
        """Events recorded through either events API, oldest first."""
        with self._lock:
            found = [obj for (group, plural), table in self._objects.items() if plural == "events" for obj in table.values()]
            found = [obj for obj in found if namespace is None or obj["metadata"].get("namespace") == namespace]
            return copy.deepcopy(sorted(found, key=lambda obj: int(obj["metadata"]["resourceVersion"])))

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request so far, in order: a copy (clear `calls` to forget earlier requests)."""
        with self._lock:
            return [(call.method, call.path) for call in self.calls]

    def verbs(self) -> set[tuple[str, str, str]]:
        """(apiGroup, resource, verb) triples used so far: what a least-privilege Role must grant."""
        with self._lock:
            return {(call.group, call.resource, call.verb) for call in self.calls if call.verb}

    @property
    def open_watches(self) -> int:
        with self._lock:
            return len(self._watchers)

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def fail_next(self, method: str, path_regex: str, status: int, times: int = 1) -> None:
        """The next `times` requests with this method (`*` for any) and a path matching the regex get `status`."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, times))

    def compact(self) -> None:
        """Forget the watch history, like etcd compaction: any older resourceVersion now gets 410 Expired."""
        with self._lock:
            self._history.clear()
            self._compacted_rv = self._rv

    # --- storage (callers hold the lock) ---

    def _table(self, resource: Resource) -> dict[Key, Json]:
        return self._objects.setdefault(resource.store, {})

    def _require(self, resource: Resource, namespace: str | None, name: str) -> Json:
        obj = self._table(resource).get((namespace or "", name))
        if obj is None:
            raise KubeError(404, f"{resource.describe(name)} not found", details={"name": name, "kind": resource.plural})
        return obj

    def _select(self, resource: Resource, namespace: str | None, matches: Predicate) -> list[Json]:
        table = self._table(resource)
        keys = sorted(key for key in table if namespace is None or key[0] == namespace)
        return [copy.deepcopy(table[key]) for key in keys if matches(table[key])]

    def _commit(self, resource: Resource, key: Key, obj: Json, old: Json | None) -> Json:
        """Store a new state under the next resourceVersion and tell the watchers; returns a copy."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("kind", resource.kind)
        _tidy_metadata(obj["metadata"])
        self._table(resource)[key] = obj
        self._record(Change(self._rv, resource.store, "MODIFIED" if old else "ADDED", copy.deepcopy(obj), old))
        return copy.deepcopy(obj)

    def _record(self, change: Change) -> None:
        self._history.append(change)
        while len(self._history) > self._history_limit:
            self._compacted_rv = self._history.popleft().rv
        loop = self._loop
        for watcher in self._watchers:
            event = _event_for(watcher, change)
            if event is not None and loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed during stop()
                    loop.call_soon_threadsafe(watcher.queue.put_nowait, json.dumps(event) + "\n")

    def _create(self, resource: Resource, namespace: str | None, body: Any) -> Json:
        obj = self._checked_body(resource, namespace, body, name=None)
        meta = obj["metadata"]
        table = self._table(resource)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(GENERATE_ALPHABET, k=5))
        name = meta.get("name")
        if not name:
            raise KubeError(422, "metadata.name: Required value: name or generateName is required")
        if len(name) > 253 or not NAME_RE.fullmatch(name):
            raise KubeError(422, f"metadata.name: Invalid value: {name!r}: must be a lowercase RFC 1123 subdomain")
        key = (namespace or "", name)
        if key in table:
            raise KubeError(409, f"{resource.describe(name)} already exists", "AlreadyExists", {"name": name})
        for server_field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(server_field, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        if resource.has_status:
            obj.pop("status", None)  # create cannot set status
        return self._commit(resource, key, obj, None)

    def _checked_body(self, resource: Resource, namespace: str | None, body: Any, name: str | None) -> Json:
        """A copy of a request body whose kind, apiVersion, namespace and name agree with the URL (else 400)."""
        if not isinstance(body, dict):
            raise KubeError(400, "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise KubeError(400, "metadata must be an object")
        if obj.get("kind", resource.kind) != resource.kind or obj.get("apiVersion", resource.api_version) != resource.api_version:
            raise KubeError(400, f"the body is a {obj.get('apiVersion')} {obj.get('kind')}, not a {resource.kind}")
        if namespace is not None and meta.setdefault("namespace", namespace) != namespace:
            raise KubeError(400, "the namespace of the provided object does not match the namespace sent on the request")
        if name is not None and meta.setdefault("name", name) != name:
            raise KubeError(400, "the name of the object does not match the name on the URL")
        return obj

    def _update(self, target: _Target, body: Any, *, conditional: bool) -> Json:
        """PUT, and PATCH after applying the patch: optimistic concurrency, then the subresource's rules."""
        resource, name = target.resource, target.name or ""
        current = self._require(resource, target.namespace, name)
        obj = self._checked_body(resource, target.namespace, body, name)
        sent_rv = obj["metadata"].get("resourceVersion")
        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            raise KubeError(
                409,
                f"Operation cannot be fulfilled on {resource.describe(name)}: the object has been modified; "
                "please apply your changes to the latest version and try again",
                details={"name": name, "kind": resource.plural},
            )
        if conditional and not sent_rv and not resource.unconditional_update:
            raise KubeError(422, "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update")
        new = self._status_write(current, obj) if target.status else self._main_write(resource, current, obj)
        return self._write(resource, current, new)

    def _status_write(self, current: Json, obj: Json) -> Json:
        """A /status write keeps everything of the stored object but `.status`."""
        new = copy.deepcopy(current)
        if "status" in obj:
            new["status"] = obj["status"]
        else:
            new.pop("status", None)
        return new

    def _main_write(self, resource: Resource, current: Json, obj: Json) -> Json:
        """A main-resource write keeps server-owned metadata and, with a status subresource, the stored status."""
        new, meta, old_meta = obj, obj["metadata"], current["metadata"]
        if resource.has_status:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        for server_field in SERVER_METADATA:
            if server_field in old_meta:
                meta[server_field] = copy.deepcopy(old_meta[server_field])
            else:
                meta.pop(server_field, None)
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        if "deletionTimestamp" in old_meta and set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or []):
            raise KubeError(422, "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted")
        if _spec_of(resource, new) != _spec_of(resource, current):
            meta["generation"] = old_meta.get("generation", 0) + 1
        return new

    def _write(self, resource: Resource, current: Json, new: Json) -> Json:
        """Commit unless nothing changed (the real server keeps the resourceVersion of a no-op update)."""
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        _tidy_metadata(new["metadata"])
        if new == current:
            return copy.deepcopy(current)
        key = (current["metadata"].get("namespace", ""), current["metadata"]["name"])
        if "deletionTimestamp" in new["metadata"] and not new["metadata"].get("finalizers"):
            return self._remove(resource, key, new, orphan=False)
        return self._commit(resource, key, new, current)

    def _patch(self, target: _Target, content_type: str, patch: Any) -> Json:
        current = self._require(target.resource, target.namespace, target.name or "")
        if content_type == "application/json-patch+json":
            patched = json_patch(current, patch)
        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(patch, dict):
                raise KubeError(400, "a merge patch must be a JSON object")
            patched = merge_patch(current, patch)
        else:
            raise KubeError(415, f"the server does not support patch type {content_type!r}")
        return self._update(target, patched, conditional=False)

    def _delete(self, resource: Resource, namespace: str | None, name: str, options: Json) -> Json:
        """Finalizers turn a delete into setting deletionTimestamp; otherwise the object goes (and its dependents)."""
        current = self._require(resource, namespace, name)
        preconditions = options.get("preconditions") or {}
        for precondition, value in preconditions.items():
            if value and current["metadata"].get(precondition) != value:
                raise KubeError(
                    409,
                    f"Precondition failed: {precondition} in precondition: {value}, in object meta: "
                    f"{current['metadata'].get(precondition)}",
                    details={"name": name, "kind": resource.plural},
                )
        key = (namespace or "", name)
        if current["metadata"].get("finalizers"):
            if "deletionTimestamp" in current["metadata"]:
                return copy.deepcopy(current)
            new = copy.deepcopy(current)
            new["metadata"].update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0)
            return self._commit(resource, key, new, current)
        orphan = options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") is True
        return self._remove(resource, key, copy.deepcopy(current), orphan=orphan)

    def _remove(self, resource: Resource, key: Key, last: Json, *, orphan: bool) -> Json:
        """Drop an object for good; DELETED carries a new resourceVersion. Then collect dependents it owned alone."""
        self._rv += 1
        last["metadata"]["resourceVersion"] = str(self._rv)
        self._table(resource).pop(key, None)
        self._record(Change(self._rv, resource.store, "DELETED", copy.deepcopy(last), None))
        if not orphan:
            self._collect_garbage(last["metadata"]["uid"])
        return last

    def _collect_garbage(self, owner_uid: str) -> None:
        """Background propagation: delete objects owned by `owner_uid` once none of their owners exists."""
        living = {obj["metadata"]["uid"] for table in self._objects.values() for obj in table.values()}
        for store, table in list(self._objects.items()):
            for (namespace, name), obj in list(table.items()):
                owners = {ref.get("uid") for ref in obj["metadata"].get("ownerReferences") or []}
                if owner_uid in owners and not owners & living and (namespace, name) in table:
                    self._delete(self._by_store[store], namespace or None, name, {})

    # --- HTTP ---

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            target = self._route(request)
            fault = self._take_fault(request.method, request.path)
            if fault is not None:
                raise KubeError(fault, f"injected failure {fault}")
            if target is None:
                return self._discovery(request)
            return await self._serve_target(request, target)
        except KubeError as error:
            return web.json_response(error.status(), status=error.code)

    def _route(self, request: web.Request) -> _Target | None:
        """Parse and log the request; None for discovery paths. Unknown resources are 404 (logged all the same)."""
        call = Call(request.method, request.path, dict(request.query))
        try:
            target = self._parse(request.path)
            if target is not None:
                call = Call(
                    request.method,
                    request.path,
                    dict(request.query),
                    _verb(request, target),
                    target.resource.group,
                    target.resource.plural + ("/status" if target.status else ""),
                    target.namespace,
                    request.content_type if request.can_read_body else "",
                )
            return target
        finally:
            with self._lock:
                self.calls.append(call)

    def _parse(self, path: str) -> _Target | None:
        segments = [segment for segment in path.split("/") if segment]
        if segments[:1] == ["api"] and len(segments) >= 3:
            group, version, rest = "", segments[1], segments[2:]
        elif segments[:1] == ["apis"] and len(segments) >= 4:
            group, version, rest = segments[1], segments[2], segments[3:]
        elif segments in ([], ["api"], ["apis"], ["version"]) or segments[:1] in (["api"], ["apis"]):
            return None
        else:
            raise KubeError(404, "the server could not find the requested resource")
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2:] != ["status"]:  # not a cluster-scoped Namespace's status
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3 or (len(rest) == 3 and rest[2] != "status"):
            raise KubeError(404, "the server could not find the requested resource")
        resource = self.resource(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        status = len(rest) == 3
        if (status and not resource.has_status) or (resource.namespaced and name and namespace is None):
            raise KubeError(404, "the server could not find the requested resource")
        if not resource.namespaced and namespace is not None:
            raise KubeError(404, "the server could not find the requested resource")
        return _Target(resource, namespace, name, status)

    def _take_fault(self, method: str, path: str) -> int | None:
        with self._lock:
            for fault in self._faults:
                if fault.method in ("*", method) and fault.path.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault.status
        return None

    async def _serve_target(self, request: web.Request, target: _Target) -> web.StreamResponse:
        verb = _verb(request, target)
        if verb == "watch":
            return await self._watch(request, target)
        body = await _read_json(request) if request.method in ("POST", "PUT", "PATCH", "DELETE") else None
        with self._lock:
            if verb == "get":
                return web.json_response(copy.deepcopy(self._require(target.resource, target.namespace, target.name or "")))
            if verb == "list":
                return web.json_response(self._list_body(target, request.query))
            if verb == "create":
                return web.json_response(self._create(target.resource, target.namespace, body), status=201)
            if verb == "update":
                return web.json_response(self._update(target, body, conditional=True))
            if verb == "patch":
                return web.json_response(self._patch(target, request.content_type, body))
            if verb == "delete":
                options = dict(body) if isinstance(body, dict) else {}
                options.setdefault("propagationPolicy", request.query.get("propagationPolicy"))
                options.setdefault("orphanDependents", request.query.get("orphanDependents", "").lower() == "true" or None)
                return web.json_response(self._delete(target.resource, target.namespace, target.name or "", options))
        raise KubeError(405, f"{request.method} is not supported on {request.path}")

    def _list_body(self, target: _Target, query: Any) -> Json:
        resource = target.resource
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": self._select(resource, target.namespace, _selector(query)),
        }

    async def _watch(self, request: web.Request, target: _Target) -> web.StreamResponse:
        """Stream newline-delimited events until timeoutSeconds, the client leaving, or stop()."""
        watcher = _Watcher(target.resource, target.namespace, _selector(request.query), asyncio.Queue())
        timeout = float(request.query.get("timeoutSeconds") or 0) or self.watch_timeout_s
        with self._lock:
            initial = self._initial_events(watcher, request.query.get("resourceVersion"))
            registered = not self._closing and not (initial and initial[-1]["type"] == "ERROR")
            if registered:
                self._watchers.add(watcher)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for event in initial:
                await response.write((json.dumps(event) + "\n").encode())
            if registered:
                await self._pump(watcher, response, timeout)
            await response.write_eof()
        except ConnectionError:  # the client left; a cancelled handler (handler_cancellation) unwinds through finally
            pass
        finally:
            with self._lock:
                self._watchers.discard(watcher)
        return response

    def _initial_events(self, watcher: _Watcher, resource_version: str | None) -> list[Json]:
        """Unset or "0": ADDED for every current object. Else the retained changes after it, or 410 if too old."""
        if resource_version in (None, "", "0"):
            objects = self._select(watcher.resource, watcher.namespace, watcher.matches)
            return [{"type": "ADDED", "object": obj} for obj in objects]
        if not resource_version.isdigit():
            raise KubeError(400, f"invalid resourceVersion {resource_version!r}")
        since = int(resource_version)
        if since < self._compacted_rv:
            error = KubeError(410, f"too old resource version: {since} ({self._compacted_rv + 1})", "Expired")
            return [{"type": "ERROR", "object": error.status()}]
        events = (_event_for(watcher, change) for change in self._history if change.rv > since)
        return [event for event in events if event is not None]

    async def _pump(self, watcher: _Watcher, response: web.StreamResponse, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                line = await asyncio.wait_for(watcher.queue.get(), remaining)
            except TimeoutError:
                return
            if line is None:  # stop()
                return
            await response.write(line.encode())

    def _discovery(self, request: web.Request) -> web.Response:
        """Just enough discovery for clients that probe the server before using it."""
        segments = [segment for segment in request.path.split("/") if segment]
        if not segments:
            raise KubeError(404, "the server could not find the requested resource")
        if segments == ["version"]:
            return web.json_response(VERSION_INFO)
        if segments == ["api"]:
            address = [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.url.removeprefix("http://")}]
            return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": address})
        if segments == ["apis"]:
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()})
        group, version = ("", segments[1]) if segments[0] == "api" else (*segments[1:3], "")[:2]
        if len(segments) > 3 or not any((r.group, r.version) == (group, version) for r in self.resources.values()):
            raise KubeError(404, "the server could not find the requested resource")
        return web.json_response(self._resource_list(group, version))

    def _groups(self) -> list[Json]:
        groups: dict[str, list[str]] = {}
        for resource in self.resources.values():
            if resource.group and resource.version not in groups.setdefault(resource.group, []):
                groups[resource.group].append(resource.version)
        return [
            {
                "name": name,
                "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
                "preferredVersion": {"groupVersion": f"{name}/{versions[0]}", "version": versions[0]},
            }
            for name, versions in groups.items()
        ]

    def _resource_list(self, group: str, version: str) -> Json:
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        listed: list[Json] = []
        for r in self.resources.values():
            if (r.group, r.version) == (group, version):
                listed.append({"name": r.plural, "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs})
                if r.has_status:
                    listed.append(
                        {
                            "name": f"{r.plural}/status",
                            "singularName": "",
                            "namespaced": r.namespaced,
                            "kind": r.kind,
                            "verbs": ["get", "patch", "update"],
                        }
                    )
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": listed}


def _verb(request: web.Request, target: _Target) -> str:
    """The RBAC verb of a request; a name-less GET is list, or watch with watch=true/1."""
    method, named = request.method, target.name is not None
    if method == "GET" and not named:
        return "watch" if request.query.get("watch", "").lower() in ("true", "1") else "list"
    verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"} if named else {"POST": "create"}
    if target.status and method in ("POST", "DELETE"):
        return ""
    return verbs.get(method, "")


def _selector(query: Any) -> Predicate:
    labels = label_selector(query.get("labelSelector", ""))
    fields = field_selector(query.get("fieldSelector", ""))
    return lambda obj: labels(obj) and fields(obj)


async def _read_json(request: web.Request) -> Any:
    text = await request.text()
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise KubeError(400, f"the request body is not JSON: {error}") from None


__all__ = [
    "DEFAULT_RESOURCES",
    "Call",
    "Change",
    "FakeKube",
    "KubeError",
    "Resource",
    "field_selector",
    "json_patch",
    "label_selector",
    "merge_patch",
]
