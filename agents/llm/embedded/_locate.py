"""Find a preset's data files in site-packages without importing (or executing) anything.

Only `importlib.metadata` is used: it reads the `*.dist-info` directory (name, version, RECORD) and
never runs the package's code. A part that is missing, at another version than the pinned one, or
whose data file is absent raises `BackendNotAvailableError` with the exact pip command to run.
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

from agents.llm.embedded._catalogue import (
    ModelPreset,
    PackageFileSource,
    SplitSource,
    install_command,
    install_command_unhashed,
)
from agents.llm.errors import BackendNotAvailableError

__all__ = ["locate_sources", "missing_message"]


def missing_message(preset: ModelPreset, problem: str) -> str:
    """A user-facing message for `problem` that names the exact install command."""
    return (
        f"embedded model {preset.name!r} ({preset.title}) is not available: {problem}. "
        f"Install it with `{install_command(preset)}` from the repository root "
        f"(or `{install_command_unhashed(preset)}`), then retry."
    )


def _locate_one(preset: ModelPreset, dist_name: str, version: str, relpath: str) -> Path:
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        raise BackendNotAvailableError(
            missing_message(preset, f"package {dist_name}=={version} is not installed")
        ) from None
    if dist.version != version:
        raise BackendNotAvailableError(
            missing_message(
                preset, f"package {dist_name} is at version {dist.version}, expected =={version}"
            )
        )
    path = Path(str(dist.locate_file(relpath)))
    if not path.is_file():
        raise BackendNotAvailableError(
            missing_message(preset, f"file {relpath} of package {dist_name} is missing")
        )
    return path


def locate_sources(preset: ModelPreset) -> list[Path]:
    """The files whose concatenation (in order) is `preset`'s GGUF file.

    For a `PackageFileSource` this is the one file, usable in place. Cheap: stats only, no
    reading. Raises `BackendNotAvailableError` naming the pip command when anything is missing.
    """
    src = preset.source
    if isinstance(src, PackageFileSource):
        return [_locate_one(preset, src.dist, src.version, src.path)]
    assert isinstance(src, SplitSource)
    return [
        _locate_one(preset, src.dist_name(k), src.version, src.data_path(k))
        for k in range(1, src.parts + 1)
    ]
