"""Where conversations go: JSONL (optionally .gz/.zst), Parquet, or a Hugging Face
`datasets` directory (`save_to_disk`), chosen from the output path.

Writers take batches, so memory is one batch, whatever the corpus size. Each
writes to a temporary name and renames on `close()`, so an interrupted run never
leaves a half-written file that looks complete.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

from wildfeedback.schema import Conversation


class Writer(Protocol):
    path: Path

    def write(self, batch: list[Conversation]) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def output_kind(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".gz", ".zst"):
        name = name.removesuffix(suffix)
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if "." not in name:
        return "hf"
    raise ValueError(f"{path}: cannot tell the output format; use .jsonl[.gz|.zst], .parquet, or a directory name")


def open_writer(path: str | os.PathLike[str]) -> Writer:
    path = Path(path)
    kind = output_kind(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        return JsonlWriter(path)
    if kind == "parquet":
        return ParquetWriter(path)
    return HFDatasetWriter(path)


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


class JsonlWriter:
    def __init__(self, path: Path):
        self.path = path
        self._partial = _partial(path)
        self._file = _open_compressed(self._partial)

    def write(self, batch: list[Conversation]) -> None:
        self._file.write(b"".join(c.to_json() + b"\n" for c in batch))

    def close(self) -> None:
        self._file.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        self._file.close()
        self._partial.unlink(missing_ok=True)


def _open_compressed(path: Path) -> BinaryIO:
    name = path.name.removesuffix(".partial")
    if name.endswith(".gz"):
        return gzip.open(path, "wb", compresslevel=6)  # type: ignore[return-value]
    if name.endswith(".zst"):
        import zstandard

        return zstandard.ZstdCompressor(level=3).stream_writer(open(path, "wb"), closefd=True)  # type: ignore[return-value]
    return open(path, "wb", buffering=1 << 20)


class ParquetWriter:
    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        from wildfeedback.io.parquet import SCHEMA

        self.path = path
        self._partial = _partial(path)
        self._writer = pq.ParquetWriter(self._partial, SCHEMA, compression="zstd")

    def write(self, batch: list[Conversation]) -> None:
        from wildfeedback.io.parquet import to_table

        if batch:
            self._writer.write_table(to_table(batch))

    def close(self) -> None:
        self._writer.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        self._writer.close()
        self._partial.unlink(missing_ok=True)


class HFDatasetWriter:
    """Parquet shards in a scratch directory, turned into a `datasets.Dataset` at the end."""

    def __init__(self, path: Path):
        try:
            import datasets  # noqa: F401
        except ImportError:
            raise RuntimeError(
                f"{path}: writing a Hugging Face dataset needs the `datasets` package: pip install 'wildfeedback[hf]'"
            ) from None
        self.path = path
        self._scratch = Path(tempfile.mkdtemp(prefix=".wildfeedback-", dir=path.parent))
        self._shard = ParquetWriter(self._scratch / "data.parquet")

    def write(self, batch: list[Conversation]) -> None:
        self._shard.write(batch)

    def close(self) -> None:
        import datasets

        self._shard.close()
        cache = self._scratch / "cache"
        dataset = datasets.Dataset.from_parquet(str(self._shard.path), cache_dir=str(cache), keep_in_memory=False)
        if self.path.exists():
            shutil.rmtree(self.path)
        dataset.save_to_disk(str(self.path))
        shutil.rmtree(self._scratch, ignore_errors=True)

    def abort(self) -> None:
        self._shard.abort()
        shutil.rmtree(self._scratch, ignore_errors=True)
