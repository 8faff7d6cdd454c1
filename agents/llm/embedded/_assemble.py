"""Assemble and verify a preset's GGUF file once, into the model cache directory.

Contract of `ensure_model_file(preset, cache_dir)`:

- Returns the path of a GGUF file whose size and sha256 equal the preset's. A split model is
  concatenated into `cache_dir/<preset.filename>`; a single-file package is used where pip put it.
- Writes are atomic: parts are streamed into a temporary file in `cache_dir` while hashing, the
  file is fsynced, checked, then `os.replace`d onto its final name (and the directory fsynced).
  A crash leaves at worst a `.partial-*` file, never a truncated model under the final name.
  Two processes assembling at once each write their own temporary file; the last rename wins
  and both are byte-identical.
- Verification happens once: a sidecar stamp `<file>.verified.json` (or, for in-place files,
  `cache_dir/<name>.verified.json`) records path, size, mtime_ns and sha256. A later start whose
  `stat()` still matches trusts the stamp and reads nothing; any change triggers a re-hash.
- Any problem (a part missing, a wrong version, a size or checksum mismatch) raises
  `BackendNotAvailableError` naming the exact pip command. Nothing here imports the packages.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from agents.llm.embedded._catalogue import ModelPreset, PackageFileSource, install_command
from agents.llm.embedded._locate import locate_sources
from agents.llm.errors import BackendNotAvailableError

__all__ = ["CACHE_ENV", "default_cache_dir", "ensure_model_file", "sha256_file"]

#: Environment variable naming the evolagents cache root; models go to `$EVOLAGENTS_CACHE/models`.
CACHE_ENV = "EVOLAGENTS_CACHE"

_CHUNK = 4 * 1024 * 1024


def default_cache_dir(environ: dict[str, str] | None = None) -> Path:
    """`$EVOLAGENTS_CACHE/models` if the variable is set, else `~/.cache/evolagents/models`."""
    env = os.environ if environ is None else environ
    root = env.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "evolagents"
    return base / "models"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stamp_for(preset: ModelPreset, target: Path, cache_dir: Path) -> Path:
    if isinstance(preset.source, PackageFileSource):
        return cache_dir / f"{preset.filename}.verified.json"
    return target.with_name(target.name + ".verified.json")


def _stamp_record(target: Path, sha256: str) -> dict[str, object]:
    st = target.stat()
    return {
        "path": str(target.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": sha256,
    }


def _stamp_matches(stamp: Path, target: Path, preset: ModelPreset) -> bool:
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
        return bool(recorded == _stamp_record(target, preset.sha256))
    except (OSError, ValueError):
        return False


def _publishable(fd: int) -> None:
    """mkstemp files are 0600; a shared model cache wants the usual 0644."""
    with contextlib.suppress(OSError, AttributeError):  # no fchmod on Windows
        os.fchmod(fd, 0o644)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.partial-")
    try:
        _publishable(fd)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported everywhere (e.g. Windows); the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_stamp(stamp: Path, target: Path, preset: ModelPreset) -> None:
    record = json.dumps(_stamp_record(target, preset.sha256), indent=1, sort_keys=True)
    _write_atomic(stamp, record.encode("utf-8"))


def _integrity_error(preset: ModelPreset, problem: str) -> BackendNotAvailableError:
    reinstall = install_command(preset).replace("pip install", "pip install --force-reinstall", 1)
    return BackendNotAvailableError(
        f"embedded model {preset.name!r}: {problem} (corrupted or tampered download). "
        f"Reinstall with `{reinstall}` from the repository root and retry."
    )


def _checksum_error(preset: ModelPreset, what: str, got: str) -> BackendNotAvailableError:
    return _integrity_error(preset, f"{what} has sha256 {got}, expected {preset.sha256}")


def _concatenate(preset: ModelPreset, parts: Iterable[Path], target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.partial-")
    try:
        _publishable(fd)
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        got = h.hexdigest()
        if got != preset.sha256:
            raise _checksum_error(preset, "the reassembled file", got)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def ensure_model_file(preset: ModelPreset, cache_dir: Path) -> Path:
    """Return the verified GGUF file of `preset`, assembling it into `cache_dir` if needed.

    Blocking (reads up to ~1 GB the first time): call it from a worker thread. An unusable cache
    directory (read-only, disk full) is a `BackendNotAvailableError` too, naming the directory.
    """
    sources = locate_sources(preset)
    try:
        return _ensure(preset, sources, cache_dir)
    except OSError as exc:
        raise BackendNotAvailableError(
            f"embedded model {preset.name!r}: cannot use the model cache {cache_dir}: {exc}. "
            f"Free space there or point {CACHE_ENV} (or options.cache_dir) elsewhere."
        ) from exc


def _ensure(preset: ModelPreset, sources: list[Path], cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    in_place = isinstance(preset.source, PackageFileSource)
    target = sources[0] if in_place else cache_dir / preset.filename
    stamp = _stamp_for(preset, target, cache_dir)

    if target.is_file() and _stamp_matches(stamp, target, preset):
        return target
    if target.is_file() and target.stat().st_size == preset.size:
        got = sha256_file(target)
        if got == preset.sha256:
            _write_stamp(stamp, target, preset)
            return target
        if in_place:
            raise _checksum_error(preset, f"{target}", got)
    elif in_place:
        size = target.stat().st_size
        raise _integrity_error(preset, f"{target} has {size} bytes, expected {preset.size}")

    total = sum(p.stat().st_size for p in sources)
    if total != preset.size:
        raise _integrity_error(preset, f"its parts add up to {total} bytes, expected {preset.size}")
    with contextlib.suppress(FileNotFoundError):
        stamp.unlink()
    _concatenate(preset, sources, target)
    _write_stamp(stamp, target, preset)
    return target
