"""The run's seeds as a re-iterable stream over every configured input file.

Small inputs (under ``COUNT_LIMIT_BYTES`` in all) are read once up front: that validates every
record before anything is written (a bad record fails the run at start, naming file and line) and
gives the progress bar its total. Larger inputs stream; a bad record then fails the run when met.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

from runtime.config import InputSpec
from runtime.errors import InputDataError
from runtime.inputs import SeedReader, SeedRecord

__all__ = ["COUNT_LIMIT_BYTES", "SeedStream"]

COUNT_LIMIT_BYTES = 64 * 1024 * 1024


class SeedStream:
    """Callable returning a fresh iterator of `SeedRecord` in input order (see module doc)."""

    def __init__(self, inputs: Sequence[InputSpec], *, base_dir: Path | None = None) -> None:
        self._inputs = list(inputs)
        self._base = base_dir
        self.readers: list[SeedReader] = []
        self.total: int | None = None
        for spec in self._inputs:
            path = self._path(spec)
            if not path.is_file():
                raise InputDataError("input file not found", file=path)
        sizes = sum(self._path(spec).stat().st_size for spec in self._inputs)
        if sizes <= COUNT_LIMIT_BYTES:
            self.total = sum(1 for _ in self())

    def _path(self, spec: InputSpec) -> Path:
        path = Path(spec.path)
        if not path.is_absolute() and self._base is not None and not path.exists():
            path = self._base / path
        return path

    def resolved_paths(self) -> list[Path]:
        """The absolute path of every input, as read (what a resumed run must read again)."""
        return [self._path(spec).resolve() for spec in self._inputs]

    def __call__(self) -> Iterator[SeedRecord]:
        self.readers = []
        for spec in self._inputs:
            reader = SeedReader(
                self._path(spec),
                format=spec.format,
                container=spec.container,
                mapping=spec.mapping or None,
                on_bad_record=spec.on_bad_record,
            )
            self.readers.append(reader)
            records: Iterator[SeedRecord] = iter(reader)
            if spec.limit is not None:
                records = itertools.islice(records, spec.limit)
            yield from records

    def skipped(self) -> int:
        """Bad records skipped so far (``on_bad_record = "skip"``)."""
        return sum(reader.stats.skipped for reader in self.readers)
