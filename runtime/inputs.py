"""Streaming seed loaders: many instruction-data formats in, one `SeedRecord` stream out.

Formats (the record *schema*; `detect_format` picks one from the first record's keys):

- `alpaca`         `{"instruction", "input"?, "output"?}`, a JSON array or JSONL
- `self_instruct`  `{"instruction", "instances": [{"input", "output"}, …]}` (first instance)
- `sharegpt`       `{"conversations": [{"from": "human"|"gpt", "value"}, …]}` (first human turn)
- `messages`       `{"messages": [{"role": "user"|"assistant", "content"}, …]}` (first user turn)
- `turns`          `{"turns": [str, …], "reference"?: [str, …]}` (MT-Bench / Vicuna questions)
- `text`           one instruction per line, blank lines skipped
- `mapped`         any JSON/JSONL/CSV/TSV with a field mapping, e.g.
                   `{"instruction": "question", "output": "answer"}` (dotted paths like
                   `turns.0` reach into nested values)

The *container* comes from the extension (`.json`, `.jsonl`/`.ndjson`, `.csv`, `.tsv`, `.txt`,
each optionally `.gz`), or from the first character for unknown extensions.

Contract:
- JSONL, text and CSV are read line by line (a generator; memory stays flat); a JSON array file
  is parsed whole, records are still yielded one at a time.
- `SeedRecord.id` is stable across runs: source name + record position + a hash of the content,
  so resuming a run finds the same ids. `line` is the 1-based line the record starts on.
- A malformed record raises `InputDataError` naming file, line and field; with
  `on_bad_record="skip"` it is skipped and counted in `reader.stats` instead. A file that cannot
  be read at all (missing, not valid JSON as a whole, undecodable) always raises.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.errors import InputDataError

__all__ = [
    "Container",
    "InputFormat",
    "LoadStats",
    "OnBadRecord",
    "SeedReader",
    "SeedRecord",
    "detect_container",
    "read_seeds",
]

InputFormat = Literal[
    "auto", "alpaca", "self_instruct", "sharegpt", "messages", "turns", "text", "mapped"
]
Container = Literal["auto", "json", "jsonl", "csv", "tsv", "text"]
OnBadRecord = Literal["fail", "skip"]
_MAX_ERRORS_KEPT = 50
_USER_ROLES = {"human", "user"}
_ASSISTANT_ROLES = {"gpt", "assistant", "chatgpt", "bing", "bard", "model"}


class SeedRecord(BaseModel):
    """One seed instruction, wherever it came from."""

    model_config = ConfigDict(frozen=True)

    id: str
    instruction: str = Field(min_length=1)
    input: str = ""
    output: str | None = None
    source: str
    line: int = Field(ge=1)
    position: int = Field(ge=0)


class LoadStats(BaseModel):
    """What a reader has seen so far (updated while iterating)."""

    read: int = 0
    yielded: int = 0
    skipped: int = 0
    errors: list[str] = Field(default_factory=list)


class _BadRecord(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def detect_container(path: Path) -> Container:
    """The container of `path` from its extension, else from its first non-blank character."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    ext = suffixes[-1] if suffixes else ""
    by_ext: dict[str, Container] = {
        ".json": "json",
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".csv": "csv",
        ".tsv": "tsv",
        ".txt": "text",
    }
    if ext in by_ext:
        return by_ext[ext]
    with _open(path) as fh:
        head = fh.read(4096).lstrip()
    if head.startswith("["):
        return "json"
    if head.startswith("{"):
        return "jsonl"
    return "text"


class SeedReader:
    """Iterate over the seeds of one file; `stats` counts what was read, yielded and skipped.

    Iterating twice reads the file twice (same records, same ids); `stats` counts both passes.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        format: InputFormat = "auto",
        container: Container = "auto",
        mapping: Mapping[str, str] | None = None,
        on_bad_record: OnBadRecord = "fail",
        source: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.format: InputFormat = "mapped" if mapping and format == "auto" else format
        self.container = container
        self.mapping = dict(mapping or {})
        self.on_bad_record = on_bad_record
        self.source = source or self.path.name
        self.stats = LoadStats()
        if self.format == "mapped" and "instruction" not in self.mapping:
            raise InputDataError(
                "a field mapping must map 'instruction' (e.g. {'instruction': 'question'})",
                file=self.path,
                field="instruction",
            )
        unknown = set(self.mapping) - {"instruction", "input", "output"}
        if unknown:
            raise InputDataError(
                f"mapping targets must be instruction/input/output, got {sorted(unknown)}",
                file=self.path,
            )

    def __iter__(self) -> Iterator[SeedRecord]:
        if not self.path.is_file():
            raise InputDataError("input file not found", file=self.path)
        container = self.container if self.container != "auto" else detect_container(self.path)
        if container == "text" and self.format not in ("auto", "text"):
            raise InputDataError(f"format {self.format!r} needs JSON, JSONL or CSV", file=self.path)
        raw = self._raw_records(container)
        fmt = self.format
        position = 0
        for line, obj in raw:
            self.stats.read += 1
            try:
                if fmt == "auto":
                    fmt = _detect_schema(obj)
                instruction, input_text, output = _extract(fmt, obj, self.mapping)
            except _BadRecord as bad:
                self._bad(line, bad.field, bad.message)
                continue
            record = _record(self.source, position, line, instruction, input_text, output)
            position += 1
            self.stats.yielded += 1
            yield record

    def raw_records(self) -> Iterator[tuple[int, Any]]:
        """The file's records as parsed, before any schema is applied: (line, object) pairs.

        Raises `InputDataError` (file, line) for a missing or unreadable file."""
        if not self.path.is_file():
            raise InputDataError("input file not found", file=self.path)
        container = self.container if self.container != "auto" else detect_container(self.path)
        return self._raw_records(container)

    # -- containers ------------------------------------------------------------------------

    def _raw_records(self, container: Container) -> Iterator[tuple[int, Any]]:
        if container == "json":
            return self._json_array()
        if container == "jsonl":
            return self._jsonl()
        if container in ("csv", "tsv"):
            return self._csv("\t" if container == "tsv" else ",")
        return self._text()

    def _json_array(self) -> Iterator[tuple[int, Any]]:
        with _open(self.path) as fh:
            text = self._read_all(fh)
        decoder = json.JSONDecoder()
        pos = _skip_ws(text, 0)
        if not text.startswith("[", pos):
            raise InputDataError("expected a JSON array of records", file=self.path, line=1)
        line, last = 1, 0
        pos = _skip_ws(text, pos + 1)
        if text.startswith("]", pos):
            return
        while True:
            line += text.count("\n", last, pos)
            last = pos
            try:
                obj, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise InputDataError(
                    f"invalid JSON: {exc.msg}", file=self.path, line=exc.lineno
                ) from None
            yield line, obj
            pos = _skip_ws(text, end)
            if text.startswith(",", pos):
                pos = _skip_ws(text, pos + 1)
            elif text.startswith("]", pos):
                return
            else:
                bad_line = text.count("\n", 0, pos) + 1
                raise InputDataError(
                    "expected ',' or ']' in the JSON array", file=self.path, line=bad_line
                )

    def _jsonl(self) -> Iterator[tuple[int, Any]]:
        for line, text in self._lines():
            if not text.strip():
                continue
            try:
                yield line, json.loads(text)
            except json.JSONDecodeError as exc:
                self.stats.read += 1
                self._bad(line, "", f"invalid JSON: {exc.msg} (column {exc.colno})")

    def _csv(self, delimiter: str) -> Iterator[tuple[int, Any]]:
        with _open(self.path) as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            start = 2
            try:
                for row in reader:
                    yield start, row
                    start = reader.line_num + 1
            except csv.Error as exc:
                raise InputDataError(
                    f"invalid CSV: {exc}", file=self.path, line=reader.line_num
                ) from None

    def _text(self) -> Iterator[tuple[int, Any]]:
        for line, text in self._lines():
            if text.strip():
                yield line, text.strip()

    def _lines(self) -> Iterator[tuple[int, str]]:
        """Decoded lines, one at a time; an undecodable line is a bad record (skippable)."""
        opener = gzip.open if self.path.suffix.lower() == ".gz" else open
        with opener(self.path, "rb") as fh:
            for line, data in enumerate(fh, start=1):
                if line == 1 and data.startswith(codecs.BOM_UTF8):
                    data = data[len(codecs.BOM_UTF8) :]
                try:
                    yield line, data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    self.stats.read += 1
                    self._bad(line, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}")

    def _read_all(self, fh: IO[str]) -> str:
        try:
            return fh.read()
        except UnicodeDecodeError as exc:
            raise InputDataError(f"not UTF-8 text: {exc.reason}", file=self.path) from None

    def _bad(self, line: int, field: str, message: str) -> None:
        if self.on_bad_record == "fail":
            raise InputDataError(message, file=self.path, line=line, field=field)
        self.stats.skipped += 1
        if len(self.stats.errors) < _MAX_ERRORS_KEPT:
            where = f"{self.path}:{line}" + (f": field {field!r}" if field else "")
            self.stats.errors.append(f"{where}: {message}")


def read_seeds(
    path: Path | str,
    *,
    format: InputFormat = "auto",
    mapping: Mapping[str, str] | None = None,
    on_bad_record: OnBadRecord = "fail",
    source: str | None = None,
) -> Iterator[SeedRecord]:
    """Stream the seeds of `path` (see `SeedReader` for the stats of skipped records)."""
    return iter(
        SeedReader(path, format=format, mapping=mapping, on_bad_record=on_bad_record, source=source)
    )


# -- helpers ---------------------------------------------------------------------------------


def _open(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _record(
    source: str, position: int, line: int, instruction: str, input_text: str, output: str | None
) -> SeedRecord:
    digest = hashlib.sha256(
        "\x00".join((source, str(position), instruction, input_text)).encode()
    ).hexdigest()[:12]
    stem = source.split(".", 1)[0] or "seed"
    return SeedRecord(
        id=f"{stem}-{position:06d}-{digest}",
        instruction=instruction,
        input=input_text,
        output=output,
        source=source,
        line=line,
        position=position,
    )


def _detect_schema(obj: Any) -> InputFormat:
    if isinstance(obj, str):
        return "text"
    if not isinstance(obj, dict):
        raise _BadRecord("", f"expected a JSON object, got {type(obj).__name__}")
    if "conversations" in obj:
        return "sharegpt"
    if "messages" in obj:
        return "messages"
    if "instances" in obj and "instruction" in obj:
        return "self_instruct"
    if "instruction" in obj:
        return "alpaca"
    if "turns" in obj:
        return "turns"
    raise _BadRecord(
        "",
        f"cannot detect the format from the keys {sorted(obj)[:10]}; "
        "pass a format or a field mapping such as {'instruction': 'question'}",
    )


def _extract(fmt: InputFormat, obj: Any, mapping: Mapping[str, str]) -> tuple[str, str, str | None]:
    if fmt == "text":
        if not isinstance(obj, str):
            raise _BadRecord("", "expected a line of text")
        return obj, "", None
    if not isinstance(obj, dict):
        raise _BadRecord("", f"expected a JSON object, got {type(obj).__name__}")
    if fmt == "alpaca":
        return (
            _text_field(obj, "instruction"),
            _opt_text(obj, "input") or "",
            _opt_text(obj, "output"),
        )
    if fmt == "self_instruct":
        instruction = _text_field(obj, "instruction")
        instances = obj.get("instances") or []
        if not isinstance(instances, list) or (instances and not isinstance(instances[0], dict)):
            raise _BadRecord("instances", "expected a list of {input, output} objects")
        first = instances[0] if instances else {}
        return (
            instruction,
            _opt_text(first, "input", "instances.0.input") or "",
            _opt_text(first, "output", "instances.0.output"),
        )
    if fmt == "sharegpt":
        return _first_exchange(obj, "conversations", "from", "value")
    if fmt == "messages":
        return _first_exchange(obj, "messages", "role", "content")
    if fmt == "turns":
        turns = obj.get("turns")
        if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
            raise _BadRecord("turns", "expected a non-empty list of strings")
        if not turns[0].strip():
            raise _BadRecord("turns", "the first turn is empty")
        reference = obj.get("reference")
        output = reference[0] if isinstance(reference, list) and reference else None
        return turns[0].strip(), "", output if isinstance(output, str) else None
    if fmt == "mapped":
        values: dict[str, str | None] = {}
        for target, path in mapping.items():
            values[target] = _lookup(obj, path)
        mapped = values.get("instruction")
        if mapped is None or not mapped.strip():
            raise _BadRecord(mapping["instruction"], "missing or empty instruction")
        return mapped.strip(), (values.get("input") or "").strip(), values.get("output")
    raise _BadRecord("", f"unknown format {fmt!r}")


def _text_field(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        what = "missing" if value is None else f"a {type(value).__name__}, not a string"
        raise _BadRecord(key, f"the instruction is {what}")
    if not value.strip():
        raise _BadRecord(key, "the instruction is empty")
    return value.strip()


def _opt_text(obj: Mapping[str, Any], key: str, field: str | None = None) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _BadRecord(field or key, f"expected a string, got {type(value).__name__}")


def _first_exchange(
    obj: Mapping[str, Any], key: str, role_key: str, text_key: str
) -> tuple[str, str, str | None]:
    turns = obj.get(key)
    if not isinstance(turns, list):
        raise _BadRecord(key, "expected a list of turns")
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise _BadRecord(f"{key}.{index}", "expected an object")
        if str(turn.get(role_key, "")).lower() not in _USER_ROLES:
            continue
        text = _content(turn.get(text_key), f"{key}.{index}.{text_key}")
        if not text.strip():
            raise _BadRecord(f"{key}.{index}.{text_key}", "the first user turn is empty")
        output = None
        if index + 1 < len(turns) and isinstance(turns[index + 1], dict):
            reply = turns[index + 1]
            if str(reply.get(role_key, "")).lower() in _ASSISTANT_ROLES:
                output = _content(reply.get(text_key), f"{key}.{index + 1}.{text_key}")
        return text.strip(), "", output
    raise _BadRecord(key, "no user turn")


def _content(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI-style content parts
        parts = [p.get("text") for p in value if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    raise _BadRecord(field, f"expected text, got {type(value).__name__}")


def _lookup(obj: Any, path: str) -> str | None:
    current = obj
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    if current is None or isinstance(current, str):
        return current
    if isinstance(current, int | float | bool):
        return str(current)
    raise _BadRecord(path, f"expected text, got {type(current).__name__}")
