"""Where records come from: paths, compression and containers.

A reader sees raw records one at a time, never a whole file: lines of JSONL,
items of a JSON array (streamed with ijson, so a 10 GB array costs no more
memory than a small one), rows of Parquet, blocks of text. Each raw record comes
with its location. A stream that breaks off (a truncated gzip, a JSON array cut
off mid-record) yields everything complete before the break and then one
`Rejected` saying where and why.
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import ijson
import orjson

from wildfeedback.errors import Location, Rejected, WildfeedbackError

DATA_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet", ".txt", ".csv")
COMPRESSION_SUFFIXES = (".gz", ".zst")


class InputError(WildfeedbackError):
    """An input path that names nothing readable."""


def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files, directories (searched recursively for data files) and globs, in a stable order."""
    files: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _is_data_file(p))
            if not found:
                raise InputError(f"{path}: directory holds no data files ({', '.join(DATA_SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise InputError(f"{text}: pattern matches no file")
            files.extend(found)
        else:
            raise InputError(f"{text}: no such file or directory")
    return files


def _is_data_file(path: Path) -> bool:
    name = path.name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    return name.endswith(DATA_SUFFIXES)


@contextmanager
def open_binary(path: Path) -> Iterator[BinaryIO]:
    """Open a file for reading, decompressing .gz and .zst on the fly."""
    name = path.name.lower()
    if name.endswith(".gz"):
        with gzip.open(path, "rb") as stream:
            yield stream  # type: ignore[misc]
    elif name.endswith(".zst"):
        import zstandard

        with open(path, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            with io.BufferedReader(reader, buffer_size=1 << 20) as stream:  # type: ignore[arg-type]
                yield stream  # type: ignore[misc]
    else:
        with open(path, "rb", buffering=1 << 20) as stream:
            yield stream


# Decompressors report a stream that ends early in several ways.
TRUNCATION_ERRORS: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile, OSError)


def truncation_reason(error: BaseException) -> str:
    return f"input ends early or is corrupt ({type(error).__name__}: {error}); records before this point were read"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as the container held it, before any format is applied."""

    location: Location
    value: Any  # the parsed JSON value, a Parquet row dict, or a text block
    raw: bytes | None = None  # the bytes it was parsed from, when there were any


def peek(path: Path, size: int = 65536) -> bytes:
    """The first bytes of the (decompressed) file: b'' for an empty one.

    Raises one of TRUNCATION_ERRORS when the stream is too damaged to give them.
    """
    with open_binary(path) as stream:
        return stream.read(size)


def container_of(path: Path, head: bytes) -> str:
    """jsonl, json-array, json-document, parquet or text, from the content, not the name."""
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"["):
        return "json-array"
    if stripped.startswith(b"{"):
        first_line = stripped.split(b"\n", 1)[0]
        try:
            orjson.loads(first_line)
            return "jsonl"
        except orjson.JSONDecodeError:
            # A single pretty-printed object, or a JSONL file whose first line is bad:
            # if the next non-empty line also starts with '{' it is JSONL.
            lines = [ln.strip() for ln in stripped.split(b"\n")[1:3] if ln.strip()]
            if lines and lines[0].startswith(b"{"):
                return "jsonl"
            return "json-document"
    return "text"


def iter_jsonl(path: Path) -> Iterator[RawRecord | Rejected]:
    """Each non-blank line parsed as JSON; a bad line is a `Rejected`, never fatal."""
    name = str(path)
    line_no = 0
    with open_binary(path) as stream:
        try:
            for line_no, line in enumerate(stream, start=1):  # noqa: B007
                if not line.strip():
                    continue
                location = Location(name, line=line_no)
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError as error:
                    yield Rejected(location, _json_reason(line, error), raw=line)
                    continue
                yield RawRecord(location, value, raw=line)
        except TRUNCATION_ERRORS as error:
            yield Rejected(Location(name, line=line_no + 1), truncation_reason(error))


def _json_reason(line: bytes, error: orjson.JSONDecodeError) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8: byte 0x{line[bad.start]:02x} at offset {bad.start} of the line"
    return f"invalid JSON: {error}"


def iter_json_array(path: Path, chunk_size: int = 1 << 20) -> Iterator[RawRecord | Rejected]:
    """Items of a top-level JSON array, streamed; an array cut off mid-record keeps every
    complete item and rejects the incomplete tail.

    ijson's push interface is used rather than `ijson.items`: it hands over each item
    as soon as it is complete, so the items parsed from the chunk in which the
    stream breaks off are not lost with the error.
    """
    name = str(path)
    parsed = ijson.sendable_list()
    parser = ijson.items_coro(parsed, "item", use_float=True)
    index = 0
    error_reason: str | None = None
    with open_binary(path) as stream:
        try:
            while chunk := stream.read(chunk_size):
                parser.send(chunk)
                for value in parsed:
                    yield RawRecord(Location(name, record=index), value)
                    index += 1
                del parsed[:]
            parser.close()
        except ijson.IncompleteJSONError as error:
            error_reason = "JSON array ends in the middle of a record (truncated file)"
            if "premature EOF" not in str(error):
                error_reason = f"invalid JSON: {str(error).splitlines()[0]}"
        except ijson.JSONError as error:
            error_reason = f"invalid JSON: {str(error).splitlines()[0]}"
        except UnicodeDecodeError as error:
            error_reason = f"not valid UTF-8: {error}"
        except TRUNCATION_ERRORS as error:
            error_reason = truncation_reason(error)
    for value in parsed:  # complete items of the chunk the error came in
        yield RawRecord(Location(name, record=index), value)
        index += 1
    if error_reason is not None:
        yield Rejected(Location(name, record=index), error_reason)


def iter_json_document(path: Path) -> Iterator[RawRecord | Rejected]:
    """A file holding one JSON value (a pretty-printed object): one record."""
    name = str(path)
    with open_binary(path) as stream:
        try:
            data = stream.read()
        except TRUNCATION_ERRORS as error:
            yield Rejected(Location(name, record=0), truncation_reason(error))
            return
    try:
        yield RawRecord(Location(name, record=0), orjson.loads(data), raw=data)
    except orjson.JSONDecodeError as error:
        yield Rejected(Location(name, record=0), _json_reason(data, error), raw=data)


def iter_parquet(path: Path, batch_size: int = 1024) -> Iterator[RawRecord | Rejected]:
    """Rows of a Parquet file as dicts, a row group's worth of memory at a time."""
    import pyarrow.parquet as pq

    name = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        yield Rejected(Location(name), f"not a readable Parquet file: {error}")
        return
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_size):
            for value in batch.to_pylist():
                yield RawRecord(Location(name, record=row), value)
                row += 1
    except Exception as error:
        yield Rejected(Location(name, record=row), f"Parquet file is damaged from this row on: {error}")


def parquet_metadata(path: Path) -> dict[bytes, bytes]:
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).metadata or {}
    except Exception:
        return {}


CONTAINERS = {
    "jsonl": iter_jsonl,
    "json-array": iter_json_array,
    "json-document": iter_json_document,
    "parquet": iter_parquet,
}
