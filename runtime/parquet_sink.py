"""Stream rows into Parquet files with a fixed schema: bounded memory, never half written.

    sink = ParquetSink(directory, schema, name=lambda i, n: f"train-{i:05d}-of-{n:05d}.parquet",
                       rows_per_file=100_000)
    for record in records:
        sink.add(record)
    paths = sink.close()        # or sink.abort() on error

Rows are buffered ``batch_rows`` at a time and written as one row group each; a file is started
under a temporary name and every file is renamed to its final name (which may depend on the
number of files) only in `close()`. Needs pyarrow (the ``export`` extra): constructing a sink
without it raises `RuntimeError` naming the extra.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ParquetSink", "require_pyarrow"]


def require_pyarrow() -> Any:
    """The pyarrow module; RuntimeError with the install hint when it is missing."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        hint = "Parquet export needs pyarrow: pip install 'evolagents[export]'"
        raise RuntimeError(hint) from exc
    return pyarrow


class ParquetSink:
    """Writes records (dicts matching ``schema``) into one or more Parquet files.

    ``name(index, total)`` names file ``index`` of ``total``; ``rows_per_file`` None keeps one
    file. Not thread-safe; call from one task.
    """

    def __init__(
        self,
        directory: Path,
        schema: Any,
        *,
        name: Callable[[int, int], str],
        rows_per_file: int | None = None,
        batch_rows: int = 2048,
    ) -> None:
        self._pa = require_pyarrow()
        self._directory = directory
        self._schema = schema
        self._name = name
        self._rows_per_file = rows_per_file
        self._batch_rows = batch_rows
        self._buffer: list[dict[str, Any]] = []
        self._writer: Any = None
        self._rows_in_file = 0
        self._temporaries: list[Path] = []
        self.rows = 0

    def add(self, record: dict[str, Any]) -> None:
        """Buffer one record; writes a row group when the buffer is full."""
        self._buffer.append(record)
        self.rows += 1
        if len(self._buffer) >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        while self._buffer:
            if self._writer is None:
                self._open()
            room = len(self._buffer)
            if self._rows_per_file is not None:
                room = min(room, self._rows_per_file - self._rows_in_file)
            chunk, self._buffer = self._buffer[:room], self._buffer[room:]
            self._writer.write_table(self._pa.Table.from_pylist(chunk, schema=self._schema))
            self._rows_in_file += len(chunk)
            if self._rows_per_file is not None and self._rows_in_file >= self._rows_per_file:
                self._writer.close()
                self._writer = None

    def _open(self) -> None:
        import pyarrow.parquet as pq

        self._directory.mkdir(parents=True, exist_ok=True)
        path = self._directory / f".part-{len(self._temporaries):05d}.parquet.tmp"
        self._temporaries.append(path)
        self._writer = pq.ParquetWriter(path, self._schema)
        self._rows_in_file = 0

    def close(self) -> list[Path]:
        """Write what is buffered, close, and give every file its final name. An empty sink
        writes one file with no rows (a dataset with no rows is still a valid dataset)."""
        self._flush()
        if self._writer is None and not self._temporaries:
            self._open()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        total = len(self._temporaries)
        paths = []
        for index, temporary in enumerate(self._temporaries):
            final = self._directory / self._name(index, total)
            temporary.replace(final)
            paths.append(final)
        self._temporaries = []
        return paths

    def abort(self) -> None:
        """Close and delete what was written (after an error)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for temporary in self._temporaries:
            temporary.unlink(missing_ok=True)
        self._temporaries = []
