"""Run untrusted Python in a separate, limited process — never in ours.

`run_python(source, limits)` writes `source` to a fresh temporary directory and runs it with
`python -I` (isolated: no user site, no PYTHON* variables) in a new session, with that directory as
its cwd and a stripped environment. Before the child runs any of `source`:

- `resource.setrlimit` (in `preexec_fn`) caps address space (`memory_bytes`), CPU seconds, the size
  of files it writes (`output_bytes`, which also bounds captured stdout/stderr) and core dumps;
- a bootstrap installs an audit hook (`sys.addaudithook`) that raises `RuntimeError` on process
  creation (`os.system`, `subprocess.Popen`, `os.exec*`, `os.posix_spawn`, `os.fork`, ...), signals
  (`os.kill`), sockets (`socket.__new__`, `connect`, `bind`, name lookups), `ctypes` and raising
  resource limits; a hook cannot be removed, and adding another is refused;
- with `network="auto"` (default) the child runs in a new, empty network namespace (`unshare -n`,
  or `unshare -rn` as a non-root user) when the kernel allows it; otherwise only the audit hook
  stands between the code and the network. `network="namespace"` fails instead of degrading.

The wall-time limit kills the whole process group. A run passes only if the process exits 0 *and*
the bootstrap reached its end (a per-run token), so an early `sys.exit(0)` in the code is a failure.

Limits of this sandbox (documented in docs/evaluation.md): it is a guard against mistakes and
runaway code in benchmark answers, not a security boundary against a determined attacker — the
child runs as our user and can read files our user can read.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from enum import StrEnum
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field

from agents.judge.errors import JudgeError

__all__ = [
    "ExecutionResult",
    "ExecutionStatus",
    "SandboxLimits",
    "network_isolation_prefix",
    "run_python",
    "run_python_sync",
]

_TAIL = 4000
_DONE_FILE = ".evolagents_done"

_BOOTSTRAP = r"""
import sys
_token = sys.argv[1]
sys.argv = ["candidate.py"]
with open("candidate.py", encoding="utf-8") as _f:
    _code = compile(_f.read(), "candidate.py", "exec")
def _install_guard():
    exact = frozenset({
        "os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.posix_spawn",
        "os.posix_spawnp", "subprocess.Popen", "socket.__new__", "socket.connect", "socket.bind",
        "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.sendto",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "sys.addaudithook",
        "resource.setrlimit", "resource.prlimit", "os.setuid", "os.chroot",
    })
    prefixes = ("os.exec", "os.spawn", "os.posix_spawn", "pty.")
    def hook(event, args):
        if event in exact or event.startswith(prefixes):
            raise RuntimeError(f"sandbox: {event} is not allowed")
    sys.addaudithook(hook)
_install_guard()
del _install_guard
_globals = {"__name__": "__main__", "__builtins__": __builtins__}
exec(_code, _globals)
with open(".evolagents_done", "w", encoding="utf-8") as _f:
    _f.write(_token)
"""


class ExecutionStatus(StrEnum):
    """How a sandboxed run ended."""

    PASSED = "passed"  # exit 0 and the code ran to its end
    FAILED = "failed"  # an exception, a non-zero exit, or an early exit
    TIMEOUT = "timeout"  # killed at the wall-time limit
    KILLED = "killed"  # killed by a signal (CPU or file-size limit, ...)


class SandboxLimits(BaseModel):
    """Limits for one sandboxed run."""

    model_config = ConfigDict(frozen=True)

    timeout_s: float = Field(default=10.0, gt=0)
    memory_bytes: int = Field(default=1 << 30, ge=64 << 20)
    output_bytes: int = Field(default=1 << 20, ge=4096)
    network: Literal["auto", "namespace", "audit"] = "auto"
    python: str = sys.executable


class ExecutionResult(BaseModel):
    """The outcome of one run; `stdout`/`stderr` are the last 4,000 characters."""

    model_config = ConfigDict(frozen=True)

    status: ExecutionStatus
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    network_isolation: Literal["namespace", "audit"] = "audit"

    @property
    def passed(self) -> bool:
        """True when the code ran to its end and exited 0."""
        return self.status is ExecutionStatus.PASSED


@functools.cache
def network_isolation_prefix() -> tuple[str, ...] | None:
    """The command prefix that gives a child an empty network namespace, or `None` if neither
    `unshare -n` nor `unshare -rn` works here. Probed once per process."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for prefix in ((unshare, "-n", "--"), (unshare, "-r", "-n", "--")):
        try:
            probe = subprocess.run(
                [*prefix, sys.executable, "-c", "pass"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return prefix
    return None


def _apply_limits(limits: SandboxLimits) -> None:  # runs in the child, between fork and exec
    cpu = int(limits.timeout_s) + 2
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _TAIL * 4))
            return f.read().decode("utf-8", "replace")[-_TAIL:]
    except OSError:
        return ""


def _command(limits: SandboxLimits, token: str) -> tuple[list[str], Literal["namespace", "audit"]]:
    base = [limits.python, "-I", "-c", _BOOTSTRAP, token]
    if limits.network == "audit":
        return base, "audit"
    prefix = network_isolation_prefix()
    if prefix is None:
        if limits.network == "namespace":
            raise JudgeError("network='namespace' but 'unshare -n' is not permitted here")
        return base, "audit"
    return [*prefix, *base], "namespace"


def run_python_sync(source: str, limits: SandboxLimits | None = None) -> ExecutionResult:
    """Blocking form of `run_python` (runs in the calling thread)."""
    limits = limits or SandboxLimits()
    token = secrets.token_hex(16)
    command, isolation = _command(limits, token)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}
    with tempfile.TemporaryDirectory(prefix="evolagents-sandbox-") as tmp:
        workdir = Path(tmp)
        (workdir / "candidate.py").write_text(source, encoding="utf-8")
        out_path, err_path = workdir / ".stdout", workdir / ".stderr"
        started = time.monotonic()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=functools.partial(_apply_limits, limits),
            )
            timed_out = False
            try:
                returncode = proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                returncode = proc.wait()
        duration = time.monotonic() - started
        done = workdir / _DONE_FILE
        finished = done.is_file() and done.read_text(encoding="utf-8") == token
        if timed_out:
            status = ExecutionStatus.TIMEOUT
        elif returncode < 0:
            status = ExecutionStatus.KILLED
        elif returncode == 0 and finished:
            status = ExecutionStatus.PASSED
        else:
            status = ExecutionStatus.FAILED
        stderr = _tail(err_path)
        if status is ExecutionStatus.KILLED:
            stderr += f"\n[sandbox] killed by {signal.Signals(-returncode).name}"
        elif status is ExecutionStatus.FAILED and returncode == 0:
            stderr += "\n[sandbox] exited 0 before the code ran to its end"
        elif status is ExecutionStatus.TIMEOUT:
            stderr += f"\n[sandbox] wall-time limit of {limits.timeout_s:g}s reached"
        return ExecutionResult(
            status=status,
            returncode=None if timed_out else returncode,
            stdout=_tail(out_path),
            stderr=stderr[-_TAIL:],
            duration_s=duration,
            network_isolation=isolation,
        )


async def run_python(
    source: str,
    limits: SandboxLimits | None = None,
    *,
    limiter: anyio.CapacityLimiter | None = None,
) -> ExecutionResult:
    """Run `source` in a sandboxed child process and wait for it (in a worker thread).

    `limiter` caps how many runs execute at once (share one per evaluation). Cancelling the
    caller does not outlive the wall-time limit: the worker thread finishes within it.
    """
    return await anyio.to_thread.run_sync(
        functools.partial(run_python_sync, source, limits), limiter=limiter
    )
