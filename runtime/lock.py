"""One owner per run directory: ``RUN_DIR/run.lock``, an advisory ``flock``.

``run``, ``resume`` and ``coordinator`` hold it for the whole session, ``export`` while it
reads (an export never reads a store a run is writing, and no run starts under an export). The
file holds the holder's PID, host and command, written once the lock is taken; a second process
gets `RunLockedError` naming them (the CLI exits 2). The kernel drops a ``flock`` when its process
dies however it dies (SIGKILL included), so a lock left by a dead process is simply taken over:
the stale file is rewritten by the new holder. The lock is local to one machine's kernel (on a
network filesystem two machines may not see each other's lock).

    with RunLock(run_dir, "resume"):      # raises RunLockedError at once if held
        ...
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from types import TracebackType

from runtime.errors import RunLockedError

__all__ = ["LOCK_FILE", "RunLock", "holder"]

LOCK_FILE = "run.lock"


def holder(run_dir: Path) -> dict[str, object]:
    """What the lock file says about its last holder (empty if unreadable)."""
    try:
        data = json.loads((run_dir / LOCK_FILE).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RunLock:
    """The exclusive lock of ``run_dir``, taken for ``command`` (named to a second process)."""

    def __init__(self, run_dir: Path, command: str) -> None:
        self.run_dir = run_dir
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting; raise `RunLockedError` naming the holder if held."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(self._refusal()) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command}
        os.ftruncate(fd, 0)  # a dead holder's record is replaced
        os.pwrite(fd, json.dumps(record).encode(), 0)

    def _refusal(self) -> str:
        info = holder(self.run_dir)
        pid = info.get("pid", "unknown")
        what = f"`{info['command']}`" if info.get("command") else "another process"
        host = f" on {info['host']}" if info.get("host") else ""
        return (
            f"{self.run_dir}: in use by {what} (PID {pid}{host}); a run directory has one "
            f"owner at a time — wait for it to finish, or stop it (kill -INT {pid})"
        )

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
