"""Fake installed model packages: a `*.dist-info` + data file on a temporary sys.path entry.

`importlib.metadata` finds them exactly like pip-installed wheels, and nothing is importable from
them (no `__init__.py`), mirroring how the embedded backend treats the real part packages.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from agents.llm.embedded._catalogue import ModelPreset, PackageFileSource, SplitSource


def install_fake_dist(site: Path, dist: str, version: str, files: dict[str, bytes]) -> None:
    """Write a minimal dist-info for `dist`==`version` and its `files` under `site`."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    record = []
    for rel, data in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        record.append(f"{rel},,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


def split_preset(site: Path, parts: list[bytes], *, sha256: str | None = None) -> ModelPreset:
    """A preset split over `len(parts)` fake packages `fakemodel-part<k>`==1.0, installed."""
    src = SplitSource("fakemodel-part", "fakemodel_part", len(parts), "1.0")
    for k, data in enumerate(parts, start=1):
        install_fake_dist(site, src.dist_name(k), src.version, {src.data_path(k): data})
    whole = b"".join(parts)
    return ModelPreset(
        name="fake-split",
        title="Fake split model",
        filename="fake-split.gguf",
        size=len(whole),
        sha256=sha256 or hashlib.sha256(whole).hexdigest(),
        source=src,
        requirements="requirements/embedded-fake.txt",
    )


def single_file_preset(site: Path, data: bytes, *, sha256: str | None = None) -> ModelPreset:
    """A preset whose whole file ships in one fake package `fakemodel-file`==2.0, installed."""
    src = PackageFileSource("fakemodel-file", "2.0", "fakemodel_file/model.gguf", no_deps=True)
    install_fake_dist(site, src.dist, src.version, {src.path: data})
    return ModelPreset(
        name="fake-file",
        title="Fake single-file model",
        filename="model.gguf",
        size=len(data),
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        source=src,
        requirements="requirements/embedded-fake-file.txt",
    )
