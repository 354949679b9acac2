"""Where records come from: paths, compression and containers.

A reader sees raw records one at a time, never a whole file: lines of JSONL,
items of a JSON array (split out of the stream, so a 10 GB array costs no more
memory than a small one), rows of Parquet, blocks of text. Each raw record comes
with its location. A stream that breaks off (a truncated gzip or zstd file, a
JSON array cut off mid-record) yields everything complete before the break and
then one `Rejected` saying where and why.

Hostile or broken input must cost a rejected record, never the run or the
machine, so two limits hold before any record reaches a parser:
- `max_record_bytes` (default `DEFAULT_MAX_RECORD_BYTES`): a longer line, array
  item or JSON document is skipped without being held in memory;
- `MAX_DEPTH`: a record nested deeper is rejected (parsers and validators
  recurse, and a stack overflow would name no record).
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from wildfeedback.errors import Location, Rejected, WildfeedbackError

DATA_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet", ".txt", ".csv")
COMPRESSION_SUFFIXES = (".gz", ".zst")

#: The most bytes one record (a JSONL line, a JSON array item, a JSON document)
#: may take before it is parsed. Real chat records are kilobytes; the limit is
#: there so that one runaway line costs a rejection, not the machine's memory.
DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024

#: The deepest nesting of arrays and objects a record may have (the record itself
#: is level 1). Chat logs need fewer than ten; parsers, validators and our
#: converters recurse, so a deeper record could exhaust the stack or, in a
#: streaming parser, memory that grows with the square of the depth.
MAX_DEPTH = 128

BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, which some editors put at the start of a file
_JSON_SPACE = b" \t\r\n"


class InputError(WildfeedbackError):
    """An input path that names nothing readable."""


def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files, directories (searched recursively for data files) and globs, in a stable order.

    Every real file is read once: a second path to it (a symlink, a directory
    reached twice, the same input given twice) is dropped. Directories are walked
    entering each real directory once, so a symlink loop costs nothing; `glob`
    and `Path.rglob` follow such a loop until paths grow too long (one file read
    41 times) and two loops make them run for hours.
    """
    files: list[Path] = []
    seen: set[str] = set()
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found = [p for p in _files_under(path) if _is_data_file(p)]
            if not found:
                raise InputError(f"{path}: directory holds no data files ({', '.join(DATA_SUFFIXES)})")
        elif path.is_file():
            found = [path]
        elif glob.has_magic(text):
            found = _glob_files(text)
            if not found:
                raise InputError(f"{text}: pattern matches no file")
        else:
            raise InputError(f"{text}: no such file or directory")
        for file in found:
            real = os.path.realpath(file)
            if real not in seen:
                seen.add(real)
                files.append(file)
    return files


def _walk_once(root: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """`os.walk` following symlinks, entering each real directory (device, inode) once,
    directories in sorted order. A caller may prune by emptying the yielded dirnames."""
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        status = os.stat(dirpath)
        key = (status.st_dev, status.st_ino)
        if key in visited:
            dirnames[:] = []
            continue
        visited.add(key)
        dirnames.sort()
        yield dirpath, dirnames, filenames


def _files_under(root: Path) -> list[Path]:
    found = []
    for dirpath, _, filenames in _walk_once(root):
        found.extend(Path(dirpath, name) for name in filenames)
    return sorted(p for p in found if p.is_file())


def _glob_files(pattern: str) -> list[Path]:
    """The files a glob pattern matches, as `glob.glob(pattern, recursive=True)` would
    (`**` is any number of directories, `*` matches no leading dot), but walking each
    real directory once."""
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    wanted = parts[fixed:]
    recursive = "**" in wanted
    found = []
    for dirpath, dirnames, filenames in _walk_once(root):
        below = Path(dirpath).relative_to(root).parts
        if not recursive and len(below) >= len(wanted) - 1:
            dirnames[:] = []  # deeper files cannot match a pattern without **
        found.extend(Path(dirpath, name) for name in filenames if _matches((*below, name), wanted))
    return sorted(p for p in found if p.is_file())


def _matches(names: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether path components `names` match glob components `parts`."""
    if not parts:
        return not names
    head = parts[0]
    if head == "**":
        if len(parts) == 1:  # a trailing ** matches every file below
            return bool(names) and not any(name.startswith(".") for name in names)
        return _matches(names, parts[1:]) or (
            len(names) > 1 and not names[0].startswith(".") and _matches(names[1:], parts)
        )
    if not names or (names[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(names[0], head) and _matches(names[1:], parts[1:])


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
        with open(path, "rb") as raw, io.BufferedReader(_ZstdFrames(raw), buffer_size=1 << 20) as stream:
            yield stream
    else:
        with open(path, "rb", buffering=1 << 20) as stream:
            yield stream


class CorruptInputError(OSError):
    """Compressed input that cannot be decompressed; the message says what it is not."""


class _ZstdFrames(io.RawIOBase):
    """The decompressed bytes of a .zst file, frame after frame, raising `EOFError`
    when the file ends inside a frame.

    zstandard's `stream_reader` returns whatever it decoded when its input runs out,
    so a file cut off mid-frame read as a shorter, complete one. A decompressobj
    says whether its frame ended (`eof`) and hands back the bytes after the end
    (`unused_data`, the start of the next frame). It has no limit on its output,
    and zstd packs up to about 32,000 bytes into one, so the compressed input is
    fed 8 KiB at a time: at most about 256 MiB comes out of one piece.
    """

    INPUT_PIECE = 8192

    def __init__(self, raw: BinaryIO):
        import zstandard

        self._raw = raw
        self._zstd_error = zstandard.ZstdError
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame: Any = None
        self._unused = b""
        self._output = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._output:
            if not self._decompress_more():
                return 0
        size = min(len(buffer), len(self._output))
        buffer[:size] = self._output[:size]
        self._output = self._output[size:]
        return size

    def _decompress_more(self) -> bool:
        data = self._unused or self._raw.read(self.INPUT_PIECE)
        self._unused = b""
        if not data:
            if self._frame is not None and not self._frame.eof:
                raise EOFError("the last zstd frame ends early: the file is cut off")
            return False
        if self._frame is None or self._frame.eof:
            self._frame = self._decompressor.decompressobj()
        try:
            self._output = memoryview(self._frame.decompress(data))
        except self._zstd_error as error:
            raise CorruptInputError(f"not zstd-compressed data, or damaged ({error})") from None
        if self._frame.eof:
            self._unused = self._frame.unused_data
        return True


# Decompressors report a stream that ends early in several ways.
TRUNCATION_ERRORS: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile, OSError)


def truncation_reason(error: BaseException, records_before: bool = True) -> str:
    """Why a stream broke off; `records_before`: the records before the break were read."""
    if isinstance(error, CorruptInputError):
        what = str(error)
    else:
        what = f"input ends early or is corrupt ({type(error).__name__}: {error})"
    return f"{what}; records before this point were read" if records_before else what


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as the container held it, before any format is applied."""

    location: Location
    value: Any  # the parsed JSON value, a Parquet row dict, or a text block
    raw: bytes | None = None  # the bytes it was parsed from, when there were any


def peek(path: Path, size: int = 65536) -> bytes:
    """The first bytes of the (decompressed) file: b'' for an empty one.

    A stream that breaks off within them gives what came before the break (the
    container reader meets the break again and reports it at its line); one
    that gives nothing at all raises one of TRUNCATION_ERRORS.
    """
    pieces: list[bytes] = []
    got = 0
    with open_binary(path) as stream:
        try:
            while got < size and (piece := stream.read1(size - got)):
                pieces.append(piece)
                got += len(piece)
        except TRUNCATION_ERRORS:
            if not got:
                raise
    return b"".join(pieces)


def container_of(path: Path, head: bytes) -> str:
    """jsonl, json-array, json-document, parquet or text, from the content, not the name."""
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.removeprefix(BOM).lstrip(_JSON_SPACE)
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


def over_size_reason(size: int, limit: int, what: str = "record") -> str:
    return f"{what} is over {limit:,} bytes ({size:,} bytes; --max-record-bytes); skipped, not kept"


def deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels in a parsed value;
    without recursion, and stopping at the first branch past the limit."""
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return False


def too_deep_reason(limit: int) -> str:
    return f"record nests arrays and objects more than {limit} levels deep; not read"


def iter_jsonl(path: Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawRecord | Rejected]:
    """Each non-blank line parsed as JSON; a bad line is a `Rejected`, never fatal.

    A line longer than `max_record_bytes` is rejected and skipped through its
    newline without being held: lines are read with a bounded readline.
    """
    name = str(path)
    line_no = 0
    with open_binary(path) as stream:
        try:
            while line := stream.readline(max_record_bytes + 1):
                line_no += 1
                if len(line) > max_record_bytes and not line.endswith(b"\n"):
                    size = len(line) + _skip_line(stream)
                    yield Rejected(Location(name, line=line_no), over_size_reason(size, max_record_bytes, "line"))
                    continue
                if line_no == 1:
                    line = line.removeprefix(BOM)
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


def _skip_line(stream: BinaryIO) -> int:
    """Read through the next newline a megabyte at a time; the number of bytes skipped."""
    skipped = 0
    while piece := stream.readline(1 << 20):
        skipped += len(piece)
        if piece.endswith(b"\n"):
            break
    return skipped


def _json_reason(line: bytes, error: orjson.JSONDecodeError) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8: byte 0x{line[bad.start]:02x} at offset {bad.start} of the line"
    return f"invalid JSON: {error}"


def iter_json_array(
    path: Path,
    chunk_size: int = 1 << 20,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    max_depth: int = MAX_DEPTH,
) -> Iterator[RawRecord | Rejected]:
    """Items of a top-level JSON array, streamed, each parsed on its own.

    An `ArraySplitter` finds where each item begins and ends in the bytes, and
    each item is parsed with orjson. A streaming parser (ijson) was used before;
    it could not give a bad item's bytes, stopped for good at the first bad byte
    (losing every item after it), and its memory grew with the square of the
    nesting depth. Split this way, a bad, over-long or over-deep item is one
    rejection with its bytes, and the next item is read as usual. An array cut
    off mid-item keeps every complete item and rejects the incomplete tail.
    """
    name = str(path)
    splitter = ArraySplitter(name, max_record_bytes=max_record_bytes, max_depth=max_depth)
    with open_binary(path) as stream:
        try:
            while chunk := stream.read(chunk_size):
                yield from splitter.feed(chunk)
        except TRUNCATION_ERRORS as error:
            yield from splitter.end(truncation_reason(error))
            return
    yield from splitter.end()


# What the scan may pass over in one step, in C: any byte but a bracket, a comma or
# a quote, and whole strings (escapes included). Inside an item commas do not
# matter either. Possessive quantifiers (++, *+) keep the regex from saving
# backtracking points. A string the chunk ends in the middle of stops it at its quote.
_STRING = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)  # stops at the closing quote
_SKIP_TOP = re.compile(rb'(?:[^"\[\]{},]++|' + _STRING + rb")*+", re.DOTALL)
_SKIP_INSIDE = re.compile(rb'(?:[^"\[\]{}]++|' + _STRING + rb")*+", re.DOTALL)
_QUOTE = ord('"')
_OPENERS, _CLOSERS = frozenset(b"[{"), frozenset(b"]}")


class ArraySplitter:
    """Splits the bytes of a JSON array, fed in chunks, into its items' bytes.

    Only the structure is followed: strings (skipped whole by a regex, escapes
    included), brackets and the commas between top-level items. That is enough
    to know where each item ends, how deep it nests and how long it is before
    any parser sees it; whether the item is valid JSON is orjson's to say.

    `depth` counts open brackets: 1 inside the array, 2 inside an item's object.
    The current item's bytes are kept from `start` in `buffer` until its end,
    unless it grows past `max_record_bytes`: then it is only followed to its end
    (`skipping`) and rejected there with its byte range.
    """

    def __init__(self, name: str, *, max_record_bytes: int, max_depth: int):
        self.name = name
        self.max_record_bytes = max_record_bytes
        self.max_depth = max_depth
        self.buffer = bytearray()
        self.offset = 0  # input offset of buffer[0]
        self.pos = 0  # where scanning resumes in buffer
        self.start = 0  # where the current item begins in buffer
        self.depth = 0  # 0: before the array's '['
        self.deepest = 1  # the deepest level the current item reached
        self.in_string = False
        self.closed = False  # the array's ']' has been seen
        self.index = 0
        self.skipping: tuple[int, int] | None = None  # (input offset, bytes) of an item too long to keep
        self.trailing = b""  # what came after the array's ']', if not whitespace

    def feed(self, chunk: bytes) -> Iterator[RawRecord | Rejected]:
        if self.closed:
            self._note_trailing(chunk)
            return
        self.buffer += chunk
        if self.depth == 0 and not self._open_array():
            return
        yield from self._scan()
        if self.closed:
            return
        if self.skipping is not None:  # drop what was scanned, keeping an unfinished escape
            self.skipping = (self.skipping[0], self.skipping[1] + self.pos)
            self._drop(self.pos)
        elif len(self.buffer) - self.start > self.max_record_bytes:
            self.skipping = (self.offset + self.start, self.pos - self.start)
            self._drop(self.pos)
        else:
            self._drop(self.start)

    def end(self, broken_off: str | None = None) -> Iterator[RawRecord | Rejected]:
        """The end of the input, or the point where it broke off (`broken_off`: why)."""
        location = Location(self.name, record=self.index)
        if self.depth == 0:
            found = f", found {self.trailing[:80]!r}" if self.trailing else ""
            yield Rejected(Location(self.name), broken_off or f"expected a JSON array ('['){found}")
            return
        if self.closed:
            if self.trailing:
                yield Rejected(location, f"content after the end of the JSON array: {self.trailing!r}", self.trailing)
            return
        rest = bytes(self.buffer[self.start :])
        reason = broken_off or (
            "JSON array ends in the middle of a record (truncated file)"
            if rest.strip(_JSON_SPACE)
            else "JSON array ends without its closing ']' (truncated file)"
        )
        if self.skipping is not None:
            reason += f"; the record was over {self.max_record_bytes:,} bytes (--max-record-bytes) and is not kept"
            rest = b""
        yield Rejected(location, reason, rest or None)

    def _open_array(self) -> bool:
        """Skip a byte-order mark and whitespace up to the array's '['."""
        text = bytes(self.buffer).removeprefix(BOM).lstrip(_JSON_SPACE)
        if not text:
            return False
        if not text.startswith(b"["):
            self.closed = True  # nothing more is parsed: this is no array
            self._note_trailing(text)
            return False
        self.depth = 1
        self.pos = self.start = len(self.buffer) - len(text) + 1
        return True

    def _scan(self) -> Iterator[RawRecord | Rejected]:
        buffer, size, pos = self.buffer, len(self.buffer), self.pos
        if self.in_string:
            pos = self._string_end(pos)
        while pos < size and not self.in_string:
            pos = (_SKIP_TOP if self.depth == 1 else _SKIP_INSIDE).match(buffer, pos).end()  # type: ignore[union-attr]
            if pos == size:
                break
            byte = buffer[pos]
            if byte == _QUOTE:  # a string the chunk ends in the middle of
                self.in_string = True
                pos = self._string_end(pos + 1)
                continue  # (the loop stops if the string is still open at the end of the buffer)
            if byte in _OPENERS:
                self.depth += 1
                if self.depth > self.deepest:
                    self.deepest = self.depth
            elif byte in _CLOSERS:
                if self.depth > 1:
                    self.depth -= 1
                elif byte == ord("]"):  # the array ends
                    yield from self._item(pos, last=True)
                    self.closed = True
                    self._note_trailing(bytes(buffer[pos + 1 :]))
                    self.pos = pos + 1
                    return
                # a stray '}' at the top level stays in the item, which orjson then rejects
            else:  # a comma between two items
                yield from self._item(pos)
                self.start = pos + 1
            pos += 1
        self.pos = pos

    def _string_end(self, pos: int) -> int:
        """Where scanning goes on after the string that is open at `pos`: just past its
        closing quote, or, if the buffer ends first, at the end (or at a final
        backslash, which escapes the next chunk's first byte)."""
        end = _STRING_REST.match(self.buffer, pos).end()  # type: ignore[union-attr]
        if end < len(self.buffer) and self.buffer[end] == _QUOTE:
            self.in_string = False
            return end + 1
        return end

    def _item(self, end: int, last: bool = False) -> Iterator[RawRecord | Rejected]:
        """The item from `start` to `end` (its comma, or the array's ']') is complete."""
        location = Location(self.name, record=self.index)
        text = bytes(self.buffer[self.start : end]).strip(_JSON_SPACE)
        deepest, self.deepest = self.deepest, 1
        skipping, self.skipping = self.skipping, None
        if skipping is not None:
            offset, size = skipping
            size += end - self.start
            yield Rejected(
                location,
                over_size_reason(size, self.max_record_bytes) + f" (input bytes {offset:,} to {offset + size:,})",
            )
        elif not text:
            if last and self.index == 0:
                return  # an empty array
            yield Rejected(location, "invalid JSON: an empty item (two commas in a row, or a comma before ']')")
        elif len(text) > self.max_record_bytes:
            yield Rejected(location, over_size_reason(len(text), self.max_record_bytes))
        elif deepest - 1 > self.max_depth:
            yield Rejected(location, too_deep_reason(self.max_depth), text)
        else:
            try:
                yield RawRecord(location, orjson.loads(text), raw=text)
            except orjson.JSONDecodeError as error:
                yield Rejected(location, _json_reason(text, error), text)
        self.index += 1

    def _drop(self, count: int) -> None:
        """Forget the first `count` bytes of the buffer (already scanned and not needed)."""
        del self.buffer[:count]
        self.offset += count
        self.pos -= count
        self.start = max(self.start - count, 0)

    def _note_trailing(self, data: bytes) -> None:
        """Keep the first 80 bytes of anything but whitespace after the array, to report them."""
        if not self.trailing:
            data = data.lstrip(_JSON_SPACE)
        self.trailing = (self.trailing + data[:80])[:80]


def iter_json_document(path: Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawRecord | Rejected]:
    """A file holding one JSON value (a pretty-printed object): one record, read whole
    only if it is at most `max_record_bytes` long."""
    name = str(path)
    location = Location(name, record=0)
    with open_binary(path) as stream:
        try:
            data = stream.read(max_record_bytes + 1)
            if len(data) > max_record_bytes:
                size = len(data) + _skip_all(stream)
                yield Rejected(location, over_size_reason(size, max_record_bytes, "the file's one JSON document"))
                return
        except TRUNCATION_ERRORS as error:
            yield Rejected(location, truncation_reason(error))
            return
    data = data.removeprefix(BOM)
    try:
        yield RawRecord(location, orjson.loads(data), raw=data)
    except orjson.JSONDecodeError as error:
        yield Rejected(location, _json_reason(data, error), raw=data)


def _skip_all(stream: BinaryIO) -> int:
    skipped = 0
    while piece := stream.read(1 << 20):
        skipped += len(piece)
    return skipped


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
