"""Flat records (signals, issues, and the other per-row outputs of later stages)
as JSONL or Parquet, written in batches and read back validated.

Conversations have their own nested Parquet layout (`io/parquet.py`); the
records here are flat, so their Arrow schema is derived from the pydantic
model: strings, integers, floats, booleans and lists of strings get typed
columns, anything free-form (a `metadata` dict) is stored as JSON text and
decoded on reading. Like the conversation writers, output goes to a temporary
name of its own and is renamed on `close()`.
"""

from __future__ import annotations

import gzip
import os
import types
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, get_args, get_origin

import orjson
from pydantic import BaseModel, ValidationError

from wildfeedback.errors import WildfeedbackError, describe_validation_error
from wildfeedback.io.outputs import remove_temporary, temporary_file
from wildfeedback.io.writers import open_compressed, output_kind

M = TypeVar("M", bound=BaseModel)

JSON_COLUMNS_KEY = b"wildfeedback.json_columns"


class RecordFileError(WildfeedbackError, ValueError):
    """A records file that cannot be read: names the file, the line or row, and what is wrong."""


def _arrow_type(annotation: Any) -> tuple[Any, bool]:
    """(Arrow type, stored as JSON text?) for a pydantic field annotation."""
    import pyarrow as pa

    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _arrow_type(options[0])
        return pa.large_string(), True
    if origin is Literal:
        values = get_args(annotation)
        if all(isinstance(v, str) for v in values):
            return pa.string(), False
        return pa.large_string(), True
    if annotation is str:
        return pa.large_string(), False
    if annotation is bool:
        return pa.bool_(), False
    if annotation is int:
        return pa.int64(), False
    if annotation is float:
        return pa.float64(), False
    if origin in (list, tuple) and get_args(annotation) and get_args(annotation)[0] is str:
        return pa.list_(pa.large_string()), False
    return pa.large_string(), True


def arrow_schema(model: type[BaseModel]) -> tuple[Any, list[str]]:
    """The Arrow schema of a flat record model, and the names of its JSON-text columns."""
    import pyarrow as pa

    fields, json_columns = [], []
    for name, info in model.model_fields.items():
        arrow_type, as_json = _arrow_type(info.annotation)
        fields.append(pa.field(name, arrow_type))
        if as_json:
            json_columns.append(name)
    schema = pa.schema(fields, metadata={JSON_COLUMNS_KEY: orjson.dumps(json_columns)})
    return schema, json_columns


class RecordWriter(Generic[M]):
    """Write records of one model to `.jsonl[.gz|.zst]` or `.parquet`; counts what it wrote."""

    def __init__(self, path: str | os.PathLike[str], model: type[M]):
        self.path = Path(path)
        self.model = model
        self.kind = output_kind(self.path)
        if self.kind not in ("jsonl", "parquet"):
            raise ValueError(f"{self.path}: records are written as .jsonl[.gz|.zst] or .parquet")
        if self.path.is_dir():
            raise ValueError(f"{self.path}: is a folder; name a .jsonl or .parquet file")
        self._partial = temporary_file(self.path)
        self.count = 0
        if self.kind == "jsonl":
            self._file = open_compressed(self._partial, like=self.path)
        else:
            import pyarrow.parquet as pq

            self._schema, self._json_columns = arrow_schema(model)
            self._file = pq.ParquetWriter(self._partial, self._schema, compression="zstd")

    def write(self, records: Iterable[M]) -> None:
        batch = list(records)
        if not batch:
            return
        if self.kind == "jsonl":
            self._file.write(b"".join(r.model_dump_json(exclude_defaults=True).encode() + b"\n" for r in batch))
        else:
            import pyarrow as pa

            rows = [r.model_dump(mode="json") for r in batch]
            for row in rows:
                for name in self._json_columns:
                    row[name] = orjson.dumps(row[name]).decode()
            self._file.write_table(pa.Table.from_pylist(rows, schema=self._schema))
        self.count += len(batch)

    def close(self) -> None:
        self._file.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        self._file.close()
        remove_temporary(self._partial)

    def __enter__(self) -> RecordWriter[M]:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def write_records(path: str | os.PathLike[str], model: type[M], records: Iterable[M]) -> int:
    with RecordWriter(path, model) as writer:
        writer.write(records)
        return writer.count


def read_records(path: str | os.PathLike[str], model: type[M]) -> Iterator[M]:
    """Records of `model` from a file `RecordWriter` wrote (or any JSONL of that shape).

    A line or row that does not fit raises `RecordFileError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordFileError(f"{path}: no such file")
    kind = output_kind(path)
    if kind == "jsonl":
        opener = gzip.open if path.name.endswith(".gz") else open
        if path.name.endswith(".zst"):
            import zstandard

            stream: Any = zstandard.open(path, "rb")
        else:
            stream = opener(path, "rb")
        with stream:
            for line_no, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    yield model.model_validate_json(line)
                except ValidationError as error:
                    raise RecordFileError(f"{path}, line {line_no}: {describe_validation_error(error)}") from None
    elif kind == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        metadata = parquet.schema_arrow.metadata or {}
        json_columns = orjson.loads(metadata.get(JSON_COLUMNS_KEY, b"[]"))
        row_no = 0
        for batch in parquet.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                for name in json_columns:
                    if isinstance(row.get(name), str):
                        row[name] = orjson.loads(row[name])
                try:
                    yield model.model_validate(row)
                except ValidationError as error:
                    raise RecordFileError(f"{path}, row {row_no}: {describe_validation_error(error)}") from None
                row_no += 1
    else:
        raise RecordFileError(f"{path}: records are read from .jsonl[.gz|.zst] or .parquet")
