"""The operator process: watches, resync, the worker, leader election and the probes, until SIGTERM.

Threads, not asyncio: the `kubernetes` client and the regression client are blocking, and one
worker keeps reconciles of different models from interleaving their writes. Without leadership the
watches still run (a standby is warm) but no key is reconciled.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tiergate.serving.operator.controller import Controller
from tiergate.serving.operator.kube import MODELS, SERVICES
from tiergate.serving.operator.leader import LeaderElector

log = logging.getLogger(__name__)

WEDGED_AFTER_SECONDS = 900.0  # a worker silent this long (an analysis has its own timeouts) is not live


class Probes:
    """`/healthz`: every thread alive and the worker not wedged; `/readyz`: the first list was queued."""

    def __init__(self, controller: Controller, threads: list[threading.Thread], elector: LeaderElector | None):
        self.controller, self.threads, self.elector = controller, threads, elector

    def live(self) -> tuple[bool, str]:
        dead = [thread.name for thread in self.threads if not thread.is_alive()]
        if dead:
            return False, f"threads stopped: {', '.join(dead)}"
        idle = time.monotonic() - self.controller.last_loop
        if idle > WEDGED_AFTER_SECONDS:
            return False, f"worker silent for {idle:.0f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if not self.controller.synced.is_set():
            return False, "first list of ModerationModels not done"
        role = "leader" if self.elector is None or self.elector.leading else "standby"
        return True, role

    def serve(self, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # kubelet probes the pod IP
        probes = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # probes every few seconds: not worth a log line
                pass

            def do_GET(self) -> None:  # http.server's name
                checks = {"/healthz": probes.live, "/readyz": probes.ready}
                if self.path not in checks:
                    self.send_error(404)
                    return
                ok, detail = checks[self.path]()
                body = json.dumps({"ok": ok, "detail": detail}).encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
        return server


def _lead(elector: LeaderElector, stop: threading.Event, on_change: Callable[[bool], None]) -> None:
    was = False
    while not stop.is_set():
        now = elector.try_acquire_or_renew()
        if now != was:
            on_change(now)
            was = now
        stop.wait(elector.renew_s)
    elector.release()


def run(
    controller: Controller, elector: LeaderElector | None, health_port: int | None, stop: threading.Event | None = None
) -> None:
    """Run until SIGTERM/SIGINT (or `stop`); returns after the worker finished its current reconcile."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())

    def became(leading: bool) -> None:
        log.info("%s leadership", "acquired" if leading else "lost")
        if leading:  # whatever happened while we were standby: look at every model now
            threading.Thread(target=controller.resync_once, name="catch-up", daemon=True).start()

    threads = [
        threading.Thread(target=controller.watch, args=(MODELS, stop), name="watch-models", daemon=True),
        threading.Thread(target=controller.watch, args=(SERVICES, stop), name="watch-services", daemon=True),
        threading.Thread(target=controller.resync, args=(stop,), name="resync", daemon=True),
    ]
    leading: Callable[[], bool] = lambda: True  # noqa: E731
    if elector is not None:
        threads.append(threading.Thread(target=_lead, args=(elector, stop, became), name="leader-election", daemon=True))
        leading = lambda: elector.leading  # noqa: E731
    worker = threading.Thread(target=controller.process, args=(stop, leading), name="worker", daemon=True)
    threads.append(worker)
    server = Probes(controller, threads, elector).serve(health_port) if health_port else None
    for thread in threads:
        thread.start()
    log.info("operator %s running (namespace: %s)", controller.settings.identity, controller.settings.namespace or "all")
    try:
        while not stop.wait(1.0):
            if not worker.is_alive():
                raise RuntimeError("the reconcile worker stopped")
    finally:
        stop.set()
        worker.join(timeout=30)
        for thread in threads:
            thread.join(timeout=5)
        if server is not None:
            server.shutdown()
        log.info("operator stopped")
