"""Run a real Triton server locally: the `tritonserver` binary shipped in the nvidia-pytriton wheel.

That build has the python backend (no onnxruntime backend), which is why the local repository
variant runs the classifier as a python-backend model. The python stub is the one built for
Python 3.11 and links the system libpython3.11; our own packages reach it through PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from tiergate.errors import ServerError
from tiergate.paths import PROJECT_ROOT
from tiergate.trust import verify_local_repository

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    libs: Path
    python_backend: Path
    stub: Path

    @classmethod
    def locate(cls) -> TritonInstall:
        # Where pytriton is importable from (a venv's own site-packages, a parent environment it extends,
        # or the user site), not where this interpreter would install it.
        spec = importlib.util.find_spec("pytriton")
        if spec is None or spec.origin is None:
            raise ServerError("nvidia-pytriton is not installed in this environment: it carries the tritonserver binary")
        site = Path(spec.origin).resolve().parent.parent
        root = site / "pytriton" / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        install = cls(
            root / "bin" / "tritonserver",
            site / "nvidia_pytriton.libs",
            root / "backends" / "python",
            root / "python_backend_stubs" / version / "triton_python_backend_stub",
        )
        for path in (install.binary, install.libs, install.python_backend, install.stub):
            if not path.exists():
                raise ServerError(f"{path} not found; is nvidia-pytriton installed in this environment?")
        return install

    def backend_directory(self, work_dir: Path) -> Path:
        """A backends folder holding `python/` plus the stub for this Python version."""
        target = Path(work_dir) / "backends"
        python = target / "python"
        if not (python / "triton_python_backend_stub").is_file():
            shutil.copytree(self.python_backend, python, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy2(self.stub, python / "triton_python_backend_stub")
        return target


def own_libpython_dir() -> str | None:
    """The folder holding this interpreter's shared libpython, when it was built with one."""
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).is_file():
        return str(libdir)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the launching process dies, even by SIGKILL (Linux prctl).

    Triton runs in its own session, so without this a killed launcher left tritonserver and its
    python stubs running, holding ports and CPU (seen: orphans from killed test runs).
    """
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM to the process alone, then SIGKILL to its whole group after `timeout_s` (a bounded stop).

    SIGTERM goes to the server alone: Triton unloads its models and stops its python-backend stubs itself
    (signalling the whole group killed the stubs under it, and Triton then waited out its exit timeout).
    The group gets SIGKILL only when the graceful stop overruns (seen: a killed stub made shutdown hang).
    """
    if process.poll() is not None:
        return
    try:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("pid %d did not stop within %.0fs; killing its process group", process.pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


ADMIN_KEY_FILE = "admin-key"
ADMIN_HEADER = "tiergate-admin"
# Triton's own HTTP/gRPC categories that need the admin header; metadata, config, inference and health stay open
# (per-model restriction -- the ensemble only -- is the gateway's job; Triton cannot restrict one model).
RESTRICTED_APIS = ("model-repository", "statistics", "trace", "logging", "shared-memory")


def new_admin_key() -> str:
    """A fresh random admin key for one launch (URL-safe: no ',', ':' or '=' to break Triton's flag syntax)."""
    return secrets.token_urlsafe(32)


def write_admin_key(work_dir: Path, key: str) -> Path:
    """`<work_dir>/admin-key`, mode 0600: how the user running `tiergate serve` reads the key (never printed)."""
    path = Path(work_dir) / ADMIN_KEY_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # an older file keeps its mode through O_TRUNC
        os.write(descriptor, key.encode("ascii"))
    finally:
        os.close(descriptor)
    return path


SERVED_COPY = "served-model-repository"  # inside the work folder, never the user's repository


class TritonServer:
    """`with TritonServer(repo) as server:` starts Triton, waits for readiness, stops it cleanly.

    Triton's HTTP always binds loopback (`tiergate serve` puts the gateway in front of it); gRPC and
    metrics bind `host`. With `admin_key`, Triton's own HTTP and gRPC need the `tiergate-admin` header
    for the RESTRICTED_APIS categories, and the key is written to `<work_dir>/admin-key` (0600).
    """

    def __init__(
        self,
        model_repository: Path,
        work_dir: Path,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        log_file: Path | None = None,
        startup_timeout_s: float = 180.0,
        verify: bool = True,
        host: str = "127.0.0.1",
        admin_key: str | None = None,
        stop_timeout_s: float = 20.0,
    ):
        self.model_repository = Path(model_repository).resolve()
        self.work_dir = Path(work_dir)
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.log_file = Path(log_file) if log_file else self.work_dir / "tritonserver.log"
        self.startup_timeout_s = startup_timeout_s
        self.verify = verify
        self.host = host
        self.admin_key = admin_key
        self.stop_timeout_s = stop_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{'127.0.0.1' if self.host in ('0.0.0.0', '::') else self.host}:{self.grpc_port}"

    def _environment(self, install: TritonInstall) -> dict[str, str]:
        env = dict(os.environ)
        # The stub must load the libpython of *this* interpreter, or it mixes another build's stdlib
        # with ours (seen: Debian's 3.11.2 libpython + pyenv's 3.11.7 extension modules -> ImportError).
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [own_libpython_dir(), str(install.libs), env.get("LD_LIBRARY_PATH")])
        )
        site = sysconfig.get_paths()["purelib"]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), site, env.get("PYTHONPATH")]))
        # The stub's embedded interpreter finds its environment like `python3` on PATH would (pyvenv.cfg next
        # to it), so the server runs as if this virtualenv were activated, whether or not the caller's shell is.
        if sys.prefix != sys.base_prefix:
            env["VIRTUAL_ENV"] = sys.prefix
            env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def serving_copy(self) -> Path:
        """A fresh copy of the repository in the work folder, verified when asked: what Triton actually loads.

        Triton's python backend writes `__pycache__/` next to each `model.py` (its embedded interpreter
        ignores PYTHONDONTWRITEBYTECODE), so serving the original would leave it holding files its manifest
        does not list. Verifying the copy, not the original, also leaves no gap between check and load.
        """
        copy = (self.work_dir / SERVED_COPY).resolve()
        source = self.model_repository
        if copy == source or copy in source.parents or source in copy.parents:
            raise ServerError(f"--work-dir {self.work_dir} overlaps the model repository {source}; choose another work folder")
        shutil.rmtree(copy, ignore_errors=True)
        try:
            shutil.copytree(source, copy)
        except (OSError, shutil.Error) as error:
            raise ServerError(f"cannot copy {source} to serve it: {str(error)[:200]}") from None
        if self.verify:
            verified = verify_local_repository(copy, where=str(source))
            log.info("serving %s (%s): verified", verified.manifest.model_version, verified.manifest.digest[:12])
        return copy

    def start(self) -> TritonServer:
        install = TritonInstall.locate()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        repository = self.serving_copy()  # refuses a work folder overlapping the repository before anything is written
        if self.admin_key:
            write_admin_key(self.work_dir, self.admin_key)
        command = [
            str(install.binary),
            f"--model-repository={repository}",
            f"--backend-directory={install.backend_directory(self.work_dir)}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--exit-on-error=true",
            "--exit-timeout-secs=10",  # in-flight requests get 10 s at shutdown, then Triton exits
            "--strict-readiness=true",
            "--allow-gpu-metrics=false",
            "--log-verbose=0",
        ]
        if self.admin_key:
            restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={self.admin_key}"
            command += [f"--http-restricted-api={restricted}", f"--grpc-restricted-protocol={restricted}"]
        log.info(
            "starting tritonserver (http %s, grpc %s, metrics %s), log: %s",
            self.http_port,
            self.grpc_port,
            self.metrics_port,
            self.log_file,
        )
        handle = self.log_file.open("wb")
        self.process = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=self._environment(install),
            start_new_session=True,  # Ctrl-C reaches us, and we stop Triton in order
            preexec_fn=die_with_parent,
        )
        handle.close()
        try:
            self.wait_ready()
        except BaseException:  # a signal or a failed start: never leave Triton running behind
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with {self.process.returncode}; last log lines:\n{self.tail()}")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    log.info("tritonserver ready at http://%s", self.http_url)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"tritonserver not ready after {self.startup_timeout_s:.0f}s; last log lines:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        if not self.log_file.is_file():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float | None = None) -> None:
        if self.process is not None:
            stop_process(self.process, self.stop_timeout_s if timeout_s is None else timeout_s)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()
