"""Call the tiergate Triton ensemble from a service: `ModerationClient` (blocking) and `AsyncModerationClient`.

Both take the same options and return the same `Classification` results; they share everything
but the waiting (URL parsing, TLS settings, headers, input checks, chunking, result assembly and
the reading of every failure as one line):

- `url`: `host:port`, `http://host[:port]` or `https://host[:port]` (TLS, certificate verified
  against the system/certifi roots or `ca_file`; `insecure=True` turns verification off, HTTP only,
  with a warning). Anything else (a path, a query, an unknown scheme, a bad port) is refused.
- `headers`: sent with every call (`Host` to route through a KServe ingress, `Authorization`, ...);
  over gRPC as lower-case metadata, with `Host` as the channel's authority. With a `Host` header
  and TLS, the certificate is checked against the Host's name (what the ingress presents for it).
- large inputs go in chunks of the served `max_batch_size`; an error names the item by its index
  in the caller's list, and `ClassificationError.partial` holds the earlier chunks' results.

The gRPC client is imported only when asked for: `tritonclient.grpc` and the KServe SDK register
the same protobuf package and cannot share a process.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np

from tiergate.errors import ClassificationError, InputDataError, LabelMismatchError
from tiergate.feedback_client import FeedbackClient as FeedbackClient  # re-exported: services import both clients from here
from tiergate.labels import check_labels
from tiergate.records import Context
from tiergate.triton_params import json_parameter, string_parameters

log = logging.getLogger(__name__)
Protocol = Literal["http", "grpc"]
OUTPUTS = ("SCORES", "FLAGS", "MAX_TIER", "TRUNCATED")
OPTIONAL_OUTPUTS = ("WINDOWS",)  # newer ensembles: how many overlapping windows the text was classified in
DEFAULT_PORTS = {"http": 80, "https": 443}
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token
HOST_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_\-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_\-]*[A-Za-z0-9_])?)*\.?$")
# Headers the protocol itself sets: overriding them would corrupt the request, not route it.
RESERVED_HEADERS = {"content-length", "content-type", "transfer-encoding", "connection", "inference-header-content-length"}


@dataclass(frozen=True)
class Classification:
    text: str
    context: str
    scores: dict[str, float]
    flags: list[str]
    max_tier: int  # most severe flagged tier (1 = most severe); 0 when nothing is flagged
    truncated: bool  # the text was longer than the model's max length and was cut
    windows: int = 1  # overlapping windows the text was classified in (1 for ensembles without WINDOWS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "context": self.context,
            "flags": self.flags,
            "max_tier": self.max_tier,
            "truncated": self.truncated,
            "windows": self.windows,
            "scores": self.scores,
        }


TRANSIENT_STATUS = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "502", "503", "504"}
TRANSIENT_TEXT = ("failed to connect", "connection refused", "unavailable", "timed out", "connection reset")
TLS_TEXT = ("ssl", "tls", "handshake", "certificate", "verification")


def is_transient(error: Any) -> bool:
    """Worth retrying: the server is unreachable or overloaded, not refusing the request itself."""
    status = str(error.status() or "")
    return status in TRANSIENT_STATUS or any(text in str(error.message() or "").lower() for text in TRANSIENT_TEXT)


def to_arrays(results: Sequence[Classification], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and flags of classified texts as [texts, labels] arrays in `labels` order."""
    scores = np.array([[item.scores[name] for name in labels] for item in results], dtype=np.float32)
    flags = np.array([[name in item.flags for name in labels] for item in results], dtype=bool)
    return scores, flags


def _shown(value: str, limit: int = 80) -> str:
    """A user-supplied value for an error message: repr'd (one line, escapes) and cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class EndpointMismatch(ClassificationError):
    """The endpoint is not what the settings say (TLS not trusted or not spoken, another protocol): waiting cannot fix it."""


@dataclass(frozen=True)
class Endpoint:
    """Where the server is: scheme, host (IPv6 without brackets) and port."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def address(self) -> str:
        """host:port as tritonclient and gRPC take it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.address}"


def parse_url(url: str) -> Endpoint:
    """`host:port`, `http://host[:port]` or `https://host[:port]`; anything else is one ClassificationError line."""
    if not isinstance(url, str):
        raise ClassificationError(f"url must be a string, not {type(url).__name__}")
    text = url.strip()
    explicit = "://" in text
    try:
        parts = urlsplit(text if explicit else "//" + text)
        port = parts.port
    except ValueError as error:
        raise ClassificationError(f"url {_shown(url)} is malformed ({error}); use host:port or http(s)://host[:port]") from None
    scheme = parts.scheme.lower() if explicit else "http"
    if scheme not in DEFAULT_PORTS:
        raise ClassificationError(f"url {_shown(url)}: unknown scheme {parts.scheme!r}; use http:// or https:// (or host:port)")
    if parts.username is not None or parts.password is not None:
        raise ClassificationError(f"url {_shown(url)}: credentials in the URL are not supported; send an Authorization header")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "#" in text or "?" in text:
        raise ClassificationError(f"url {_shown(url)} has a path or query; give only [scheme://]host:port")
    host = parts.hostname or ""
    if not host:
        raise ClassificationError(f"url {_shown(url)} names no host; use host:port or http(s)://host[:port]")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ClassificationError(f"url {_shown(url)}: {host!r} is not a valid IPv6 address") from None
    elif not HOST_NAME.match(host):
        raise ClassificationError(f"url {_shown(url)}: {_shown(host)} is not a valid host name")
    if port is None:
        if not explicit:
            raise ClassificationError(f"url {_shown(url)} needs a port (host:port), or a scheme (http://host, https://host)")
        port = DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise ClassificationError(f"url {_shown(url)}: port {port} is not in 1-65535")
    return Endpoint(scheme, host, port)


def parse_header(text: str) -> tuple[str, str]:
    """`Name: value` (the CLI's --header) as a pair; refused when it is not that shape."""
    name, separator, value = text.partition(":")
    if not separator or not name.strip():
        raise ClassificationError(
            f"header {_shown(text, 40)} must look like 'Name: value' (e.g. 'Host: tiergate.ns.example.com')"
        )
    return name.strip(), value.strip()


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Header names must be tokens and values one line; a value is never echoed (it may be a credential)."""
    checked: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise ClassificationError(f"header name {_shown(str(name), 40)} is not a valid HTTP header name")
        if not isinstance(value, str) or any(char in value for char in "\r\n\0"):
            raise ClassificationError(f"header {name}: the value must be one line of text")
        if name.lower() in RESERVED_HEADERS:
            raise ClassificationError(f"header {name} is set by the protocol itself and cannot be overridden")
        if name.lower() in seen:
            raise ClassificationError(f"header {name} is given twice")
        seen.add(name.lower())
        checked[name] = value.strip()
    return checked


def _default_cafile() -> str | None:
    """The CA bundle tritonclient's HTTP stack uses by default (certifi), else the system's."""
    try:
        import certifi

        return str(certifi.where())
    except ImportError:  # pragma: no cover - certifi ships with the HTTP client
        return None


class _ServerNamedContext(ssl.SSLContext):
    """An SSL context that always presents and checks `server_name` (the Host header), whatever host it connects to."""

    server_name = ""

    def wrap_bio(
        self, incoming: Any, outgoing: Any, server_side: bool = False, server_hostname: Any = None, session: Any = None
    ) -> Any:
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name or server_hostname, session)


def _tls_cause(error: BaseException) -> ssl.SSLError | None:
    """The SSL error behind a client error (aiohttp and tritonclient wrap it), the most specific one found."""
    seen: set[int] = set()
    stack: list[Any] = [error]
    found: list[ssl.SSLError] = []
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            found.append(current)
        stack.extend(
            [
                current.__cause__,
                current.__context__,
                getattr(current, "os_error", None),
                getattr(current, "certificate_error", None),
            ]
        )
    verified = [item for item in found if getattr(item, "verify_message", None)]
    chosen = verified or found
    return chosen[-1] if chosen else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


@dataclass(frozen=True)
class _Batch:
    """The caller's items, checked: originals (for the results), UTF-8 bytes (for the server), contexts."""

    originals: list[str]
    encoded: list[bytes]
    contexts: list[str]


class _ClientCore:
    """What the blocking and the async client share: settings, checks, requests and results; no waiting."""

    _client: Any

    def __init__(
        self,
        url: str,
        protocol: Protocol = "http",
        model_name: str = "tiergate",
        timeout_s: float = 30.0,
        retries: int = 3,
        retry_delay_s: float = 0.5,
        expected_labels: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        ca_file: str | Path | None = None,
        insecure: bool = False,
    ):
        if protocol not in ("http", "grpc"):
            raise ClassificationError(f"unknown protocol {protocol!r}; use http or grpc")
        self.endpoint = parse_url(url)
        scheme = self.endpoint.scheme if protocol == "http" else ("grpcs" if self.endpoint.tls else "grpc")
        self.url = f"{scheme}://{self.endpoint.address}"  # as messages show it
        self.protocol = protocol
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.expected_labels = list(expected_labels) if expected_labels is not None else None
        self.headers = check_headers(headers)
        self.ca_file = str(ca_file) if ca_file is not None else None
        self.insecure = insecure
        self._check_tls()
        self._client = None
        self.labels: list[str] = []
        self.max_batch_size = 1
        self.contexts: dict[str, list[str]] = {}
        self.model_version = ""
        self.outputs: tuple[str, ...] = OUTPUTS
        self._connect()

    def _connect(self) -> None:
        """Hook run at the end of construction: the blocking client connects here; the others wait."""

    # -- settings ------------------------------------------------------------------------------------------
    def _check_tls(self) -> None:
        if not self.endpoint.tls:
            if self.ca_file is not None or self.insecure:
                raise ClassificationError(f"{self.url} is plain HTTP: a CA file or --insecure only applies to https:// URLs")
            return
        if self.ca_file is not None:
            if not Path(self.ca_file).is_file():
                raise ClassificationError(f"CA file {self.ca_file} not found")
            try:
                ssl.create_default_context(cafile=self.ca_file)
            except (ssl.SSLError, ValueError, OSError) as error:
                raise ClassificationError(
                    f"CA file {self.ca_file} is not a PEM certificate bundle ({_first_line(error)})"
                ) from None
        if self.insecure and self.protocol == "grpc":
            raise ClassificationError(
                "insecure (--insecure) is not available over gRPC, which cannot skip certificate checks; "
                "pass the server's CA with ca_file (--ca-file)"
            )

    @property
    def host_header(self) -> str | None:
        return next((value for name, value in self.headers.items() if name.lower() == "host"), None)

    @property
    def server_name(self) -> str:
        """The TLS name to present and verify: the Host header's host when one is sent, else the URL's."""
        host = self.host_header
        if host:
            try:
                name = urlsplit("//" + host).hostname
            except ValueError:
                name = None
            if name:
                return name
        return self.endpoint.host

    def _grpc_metadata(self) -> dict[str, str]:
        """Headers as gRPC metadata: lower-case keys; Host becomes the channel's authority instead."""
        return {name.lower(): value for name, value in self.headers.items() if name.lower() != "host"}

    def _grpc_channel_args(self, module: Any) -> list[tuple[str, Any]]:
        """tritonclient's default channel options, plus the authority (Host) and the TLS name to check."""
        keepalive = module.KeepAliveOptions()
        limit = 2**31 - 1  # tritonclient's MAX_GRPC_MESSAGE_SIZE
        args: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ]
        if self.host_header:
            args.append(("grpc.default_authority", self.host_header))
            if self.endpoint.tls:
                args.append(("grpc.ssl_target_name_override", self.server_name))
        return args

    def _gevent_ssl_factory(self) -> Callable[..., ssl.SSLContext]:
        """For the blocking HTTP client (geventhttpclient): verification on, `ca_file`, or off when insecure."""
        import gevent.ssl

        def factory(cafile: str | None = None, **_: Any) -> ssl.SSLContext:
            context = gevent.ssl.create_default_context(cafile=self.ca_file or cafile or _default_cafile())
            if self.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            return context

        return factory

    def _asyncio_ssl_context(self) -> ssl.SSLContext:
        """For the async HTTP client (aiohttp): the same policy as `_gevent_ssl_factory`."""
        context = _ServerNamedContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=self.ca_file or _default_cafile())
        if self.host_header:
            context.server_name = self.server_name
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _make_client(self, aio: bool) -> Any:
        """The tritonclient object for this protocol; nothing is sent yet."""
        address, tls = self.endpoint.address, self.endpoint.tls
        if self.insecure:
            log.warning(
                "TLS certificate verification is OFF for %s (insecure): anyone on the path can read and change the traffic",
                self.url,
            )
        if self.protocol == "http":
            if aio:
                import tritonclient.http.aio as http_aio

                self._module = http_aio
                return http_aio.InferenceServerClient(
                    address, conn_timeout=self.timeout_s, ssl=tls, ssl_context=self._asyncio_ssl_context() if tls else None
                )
            import tritonclient.http as http

            self._module = http
            options: dict[str, Any] = {}
            if tls:
                options = {
                    "ssl": True,
                    "ssl_context_factory": self._gevent_ssl_factory(),
                    "ssl_options": {"server_hostname": self.server_name},
                    "insecure": self.insecure,
                }
            return http.InferenceServerClient(
                address, connection_timeout=self.timeout_s, network_timeout=self.timeout_s, **options
            )
        if aio:
            import tritonclient.grpc.aio as grpc_module
        else:
            import tritonclient.grpc as grpc_module  # type: ignore[no-redef]
        self._module = grpc_module
        return grpc_module.InferenceServerClient(
            address, ssl=tls, root_certificates=self.ca_file, channel_args=self._grpc_channel_args(grpc_module)
        )

    def _options(self) -> dict[str, Any]:
        """Keyword arguments of every call: the headers, and gRPC's per-call deadline."""
        if self.protocol == "grpc":
            return {"headers": self._grpc_metadata(), "client_timeout": self.timeout_s}
        return {"headers": dict(self.headers)}

    # -- requests and answers ------------------------------------------------------------------------------
    def _config_request(self) -> Callable[[], Any]:
        options = self._options()
        if self.protocol == "grpc":
            options["as_json"] = True
        return functools.partial(self._client.get_model_config, self.model_name, **options)

    def _apply_config(self, config: Any) -> None:
        """Read labels, batch size, contexts, version and outputs; an answer that is not a model config is one line."""
        try:
            if self.protocol == "grpc":
                config = config.get("config", {})
            parameters = string_parameters(config)
            if "labels" not in parameters:
                raise LabelMismatchError(f"model {self.model_name} publishes no label list; not a tiergate ensemble")
            labels = json_parameter(parameters, "labels")
            if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
                raise ValueError("its labels parameter is not a list of names")
            self.labels = labels
            self.max_batch_size = max(1, int(config.get("max_batch_size", 1) or 1))
            self.contexts = json_parameter(parameters, "contexts", "{}")
            self.model_version = str(parameters.get("model_version", ""))
            listed = {str(output.get("name")) for output in config.get("output", [])}
        except (AttributeError, TypeError, ValueError, KeyError) as error:
            raise ClassificationError(
                f"model config: {self.url} answered for model {self.model_name} with something that is not a Triton "
                f"model config ({type(error).__name__}: {_first_line(error)[:120]}); is it a KServe v2 endpoint?"
            ) from None
        self.outputs = OUTPUTS + tuple(name for name in OPTIONAL_OUTPUTS if name in listed)
        if self.expected_labels is not None:
            check_labels(self.labels, self.expected_labels, f"served model {self.model_name}")

    def _ready_requests(self) -> tuple[Callable[[], Any], Callable[[], Any]]:
        options = self._options()
        return (
            functools.partial(self._client.is_server_ready, **options),
            functools.partial(self._client.is_model_ready, self.model_name, **options),
        )

    def _prepare(self, texts: str | bytes | Sequence[str | bytes], context: str | Sequence[str]) -> _Batch:
        """Check every item before anything is sent; an error names the item's index in the caller's list."""
        items = [texts] if isinstance(texts, str | bytes) else list(texts)
        contexts = [context] * len(items) if isinstance(context, str) else list(context)
        if len(contexts) != len(items):
            raise ClassificationError(f"{len(items)} texts but {len(contexts)} contexts")
        originals, encoded = [], []
        for index, item in enumerate(items):
            if isinstance(item, str):
                try:
                    data = item.encode("utf-8")
                except UnicodeEncodeError:
                    raw = item.encode("utf-8", "surrogateescape")  # what a shell argument's bytes were
                    position = next(i for i, char in enumerate(item) if "\ud800" <= char <= "\udfff")
                    raise ClassificationError(
                        f"item {index}: text is not valid UTF-8 (undecodable byte at character {position}; {len(raw)} bytes)"
                    ) from None
                original = item
            elif isinstance(item, bytes):
                try:
                    original = item.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise ClassificationError(
                        f"item {index}: text is not valid UTF-8 (byte 0x{item[error.start]:02x} at position {error.start})"
                    ) from None
                data = item
            else:
                raise ClassificationError(f"item {index}: text must be str or bytes, not {type(item).__name__}")
            if not original.strip():
                raise ClassificationError(f"item {index}: text is empty or whitespace")
            originals.append(original)
            encoded.append(data)
        checked = []
        for index, value in enumerate(contexts):
            if not isinstance(value, str):
                raise ClassificationError(f"item {index}: context must be a str like general/message, not {type(value).__name__}")
            try:
                value.encode("utf-8")
                if self.contexts:
                    Context.parse(value, self.contexts.get("audiences", []), self.contexts.get("surfaces", []))
            except UnicodeEncodeError:
                raise ClassificationError(f"item {index}: context {_shown(value)} is not valid UTF-8") from None
            except InputDataError as error:
                raise ClassificationError(f"item {index}: {error}") from None
            checked.append(value)
        return _Batch(originals, encoded, checked)

    def _chunks(self, count: int) -> list[tuple[int, int]]:
        return [(start, min(start + self.max_batch_size, count)) for start in range(0, count, self.max_batch_size)]

    @staticmethod
    def _items(start: int, stop: int) -> str:
        return f"item {start}" if stop - start == 1 else f"items {start}-{stop - 1}"

    def _infer_request(self, batch: _Batch, start: int, stop: int) -> Callable[[], Any]:
        module = self._module
        text_array = np.array([[text] for text in batch.encoded[start:stop]], dtype=object)
        context_array = np.array([[value.encode("utf-8")] for value in batch.contexts[start:stop]], dtype=object)
        inputs = [
            module.InferInput("TEXT", list(text_array.shape), "BYTES"),
            module.InferInput("CONTEXT", list(context_array.shape), "BYTES"),
        ]
        inputs[0].set_data_from_numpy(text_array)
        inputs[1].set_data_from_numpy(context_array)
        outputs = [module.InferRequestedOutput(name) for name in self.outputs]
        return functools.partial(self._client.infer, self.model_name, inputs, outputs=outputs, **self._options())

    def _assemble(self, batch: _Batch, start: int, stop: int, result: Any) -> list[Classification]:
        try:
            return self._rows(batch, start, stop, result)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as error:
            raise ClassificationError(
                f"{self._items(start, stop)}: the server's answer does not fit the ensemble's outputs "
                f"({type(error).__name__}: {_first_line(error)[:120]})"
            ) from None

    def _rows(self, batch: _Batch, start: int, stop: int, result: Any) -> list[Classification]:
        arrays = {name: result.as_numpy(name) for name in self.outputs}
        missing = [name for name, array in arrays.items() if array is None or len(array) != stop - start]
        if missing:
            raise ClassificationError(f"{self._items(start, stop)}: the server's answer lacks rows of {', '.join(missing)}")
        results = []
        for row in range(stop - start):
            scores = {name: round(float(value), 6) for name, value in zip(self.labels, arrays["SCORES"][row], strict=True)}
            flags = [name for name, flag in zip(self.labels, arrays["FLAGS"][row], strict=True) if flag]
            windows = int(arrays["WINDOWS"][row].reshape(-1)[0]) if "WINDOWS" in arrays else 1
            results.append(
                Classification(
                    batch.originals[start + row],
                    batch.contexts[start + row],
                    scores,
                    flags,
                    int(arrays["MAX_TIER"][row].reshape(-1)[0]),
                    bool(arrays["TRUNCATED"][row].reshape(-1)[0]),
                    windows,
                )
            )
        return results

    # -- failures ------------------------------------------------------------------------------------------
    def _failure(self, what: str, error: BaseException, offset: int = 0) -> ClassificationError | None:
        """A failure that retrying will not fix, as one line; None when it is worth retrying."""
        tls = _tls_cause(error)
        if tls is not None:
            return self._tls_failure(what, tls)
        if hasattr(error, "status") and hasattr(error, "message") and callable(error.message):  # InferenceServerException
            message = str(error.message() or "")
            if self.protocol == "grpc" and self.endpoint.tls and any(text in message.lower() for text in TLS_TEXT):
                return EndpointMismatch(
                    f"{what}: TLS with {self.url} failed ({message.strip().splitlines()[0][:300]}); "
                    "is it an https endpoint, and its CA given with ca_file (--ca-file)?"
                )
            if is_transient(error):
                return None
            message = re.sub(r"\bitem (\d+)\b", lambda match: f"item {offset + int(match.group(1))}", message)
            return ClassificationError(f"{what}: {' '.join(message.split())[:400]}{self._status_hint(error)}")
        if isinstance(error, TimeoutError | ConnectionError | asyncio.TimeoutError):
            return None
        name = type(error).__name__
        if name == "JSONDecodeError":
            return ClassificationError(
                f"{what}: {self.url} answered with something that is not JSON ({_first_line(error)[:120]}); "
                "is it a KServe v2 / Triton endpoint (a login page, a proxy)?"
            )
        if "ParseError" in name or "BadStatusLine" in name or "Expected HTTP" in str(error):
            return EndpointMismatch(
                f"{what}: {self.url} does not answer HTTP/1.1 ({name}: {_first_line(error)[:120]}); "
                "is this the gRPC port? use the HTTP port, or protocol grpc (--protocol grpc)"
            )
        if isinstance(error, OSError):
            return None
        return ClassificationError(f"{what}: {name}: {_first_line(error)}")

    def _status_hint(self, error: Any) -> str:
        """What an HTTP status usually means here: credentials, or an ingress that does not route this Host."""
        status = str(error.status() or "")
        if "is not the public model" in str(error.message() or ""):  # the gateway's own 403: no credential helps
            return ""
        if status in ("401", "403", "StatusCode.UNAUTHENTICATED", "StatusCode.PERMISSION_DENIED"):
            return " (the endpoint wants credentials: send them as a header, e.g. --header 'Authorization: Bearer ...')"
        if status == "404" and self.protocol == "http":
            return (
                f" (HTTP 404: no model {self.model_name!r} there; behind a KServe ingress, route with "
                "--header 'Host: <isvc>.<namespace>.<domain>')"
            )
        return ""

    def _tls_failure(self, what: str, error: ssl.SSLError) -> ClassificationError:
        reason = getattr(error, "verify_message", None) or getattr(error, "reason", None) or _first_line(error)
        if isinstance(error, ssl.SSLCertVerificationError):
            return EndpointMismatch(
                f"{what}: the TLS certificate of {self.url} (as {self.server_name}) is not trusted ({reason}); "
                "pass its CA with ca_file (--ca-file), or insecure=True (--insecure) to skip the check"
            )
        return EndpointMismatch(f"{what}: TLS with {self.url} failed ({reason}); is it an https endpoint?")

    def _unreachable(self, what: str, last: BaseException | None) -> ClassificationError:
        detail = _first_line(last) if last is not None else "no answer"
        hint = "; is this the HTTP port? use the gRPC port, or protocol http" if "socket closed" in detail.lower() else ""
        return ClassificationError(
            f"{what}: server not reachable at {self.url} after {self.retries + 1} attempts ({detail[:200]}){hint}"
        )

    def _delay(self, attempt: int) -> float:
        return float(self.retry_delay_s * (2**attempt))


def check_settings(
    url: str,
    protocol: Protocol = "http",
    headers: Mapping[str, str] | None = None,
    ca_file: str | Path | None = None,
    insecure: bool = False,
) -> None:
    """Refuse bad connection settings (URL, protocol, headers, CA file, insecure) without connecting."""
    _ClientCore(url, protocol, headers=headers, ca_file=ca_file, insecure=insecure)


class ModerationClient(_ClientCore):
    """Blocking client; reads and checks the served model's config when built. Also a context manager."""

    def _connect(self) -> None:
        self._client = self._make_client(aio=False)
        try:
            self._apply_config(self._call("model config", self._config_request()))
        except BaseException:
            self.close()
            raise

    def _call(self, what: str, request: Callable[[], Any], offset: int = 0) -> Any:
        """Retry transient failures (connection refused, unavailable); a refusal fails at once, as one line."""
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            try:
                return request()
            except Exception as error:  # the network boundary: every failure becomes one line or a retry
                failure = self._failure(what, error, offset)
                if failure is not None:
                    raise failure from None
                last = error
            if attempt < self.retries:
                time.sleep(self._delay(attempt))
        raise self._unreachable(what, last)

    def ready(self) -> bool:
        try:
            server, model = self._ready_requests()
            return bool(server() and model())
        except Exception:
            return False

    def classify(
        self, texts: str | bytes | Sequence[str | bytes], context: str | Sequence[str] = "general/message"
    ) -> list[Classification]:
        """Classify one text or many; `context` is one AUDIENCE/SURFACE for all, or one per text.

        Every item is checked first; on a failure the error names the caller's item index (or range)
        and its `partial` holds the results of the chunks before it.
        """
        batch = self._prepare(texts, context)
        results: list[Classification] = []
        for start, stop in self._chunks(len(batch.encoded)):
            try:
                answer = self._call(self._items(start, stop), self._infer_request(batch, start, stop), offset=start)
                results.extend(self._assemble(batch, start, stop, answer))
            except ClassificationError as error:
                raise type(error)(str(error), partial=results) from None
        return results

    def arrays(self, texts: Sequence[str | bytes], contexts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Scores and flags as [texts, labels] arrays in the served label order (for vector checks, parity)."""
        return to_arrays(self.classify(texts, contexts), self.labels)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> ModerationClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


class AsyncModerationClient(_ClientCore):
    """asyncio client (tritonclient.http.aio / grpc.aio): `async with AsyncModerationClient(url) as client:`.

    Nothing is sent until `open()` (or `async with`), which reads and checks the served model's config.
    """

    async def open(self) -> AsyncModerationClient:
        if self._client is None:
            self._client = self._make_client(aio=True)
            try:
                self._apply_config(await self._call("model config", self._config_request()))
            except BaseException:
                await self.close()
                raise
        return self

    async def _call(self, what: str, request: Callable[[], Any], offset: int = 0) -> Any:
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            try:
                return await request()
            except Exception as error:  # the network boundary, as in ModerationClient._call
                failure = self._failure(what, error, offset)
                if failure is not None:
                    raise failure from None
                last = error
            if attempt < self.retries:
                await asyncio.sleep(self._delay(attempt))
        raise self._unreachable(what, last)

    async def ready(self) -> bool:
        try:
            await self.open()
            server, model = self._ready_requests()
            return bool(await server() and await model())
        except Exception:
            return False

    async def classify(
        self, texts: str | bytes | Sequence[str | bytes], context: str | Sequence[str] = "general/message"
    ) -> list[Classification]:
        """As `ModerationClient.classify`; chunks are sent one after the other, in order."""
        await self.open()
        batch = self._prepare(texts, context)
        results: list[Classification] = []
        for start, stop in self._chunks(len(batch.encoded)):
            try:
                answer = await self._call(self._items(start, stop), self._infer_request(batch, start, stop), offset=start)
                results.extend(self._assemble(batch, start, stop, answer))
            except ClassificationError as error:
                raise type(error)(str(error), partial=results) from None
        return results

    async def arrays(self, texts: Sequence[str | bytes], contexts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return to_arrays(await self.classify(texts, contexts), self.labels)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def __aenter__(self) -> AsyncModerationClient:
        return await self.open()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        await self.close()
