"""Where conversations go: JSONL (optionally .gz/.zst), Parquet, or a Hugging Face
`datasets` directory (`save_to_disk`), chosen from the output path.

Writers take batches, so memory is one batch, whatever the corpus size. Each
writes to a temporary name of its own (`io/outputs.py`) and renames on
`close()`, so an interrupted run never leaves a half-written file that looks
complete, two runs never mix, and a folder that was not ours is never deleted.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import BinaryIO, Protocol

from wildfeedback.io.outputs import check_folder_target, remove_temporary, swap_in, temporary_file, temporary_folder
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


def open_writer(path: str | os.PathLike[str], *, overwrite: bool = False) -> Writer:
    """A writer for `path`. A folder target (a dataset) that holds files wildfeedback
    did not write is refused unless `overwrite`."""
    path = Path(path)
    kind = output_kind(path)
    if kind == "hf":
        check_folder_target(path, overwrite=overwrite, what="dataset")
    elif path.is_dir():
        raise ValueError(f"{path}: is a folder; name a file (.jsonl, .parquet) or a new folder for a dataset")
    if kind == "jsonl":
        return JsonlWriter(path)
    if kind == "parquet":
        return ParquetWriter(path)
    return HFDatasetWriter(path)


class JsonlWriter:
    def __init__(self, path: Path):
        self.path = path
        self._partial = temporary_file(path)
        self._file = open_compressed(self._partial, like=path)

    def write(self, batch: list[Conversation]) -> None:
        self._file.write(b"".join(c.to_json() + b"\n" for c in batch))

    def close(self) -> None:
        self._file.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        self._file.close()
        remove_temporary(self._partial)


def open_compressed(path: Path, *, like: Path) -> BinaryIO:
    """`path` opened for writing, compressed as the name of `like` says (.gz, .zst)."""
    name = like.name
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
        self._partial = temporary_file(path)
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
        remove_temporary(self._partial)


class HFDatasetWriter:
    """Parquet shards in a scratch folder, turned into a `datasets.Dataset` in a fresh
    sibling folder and swapped in at the end (`io/outputs.py`): the previous
    dataset stays whole until the new one is complete."""

    def __init__(self, path: Path):
        try:
            import datasets  # noqa: F401
        except ImportError:
            raise RuntimeError(
                f"{path}: writing a Hugging Face dataset needs the `datasets` package: pip install 'wildfeedback[hf]'"
            ) from None
        self.path = path
        self._scratch = temporary_folder(path)
        self._shard = ParquetWriter(self._scratch / "data.parquet")

    def write(self, batch: list[Conversation]) -> None:
        self._shard.write(batch)

    def close(self) -> None:
        import datasets

        self._shard.close()
        dataset = datasets.Dataset.from_parquet(
            str(self._shard.path), cache_dir=str(self._scratch / "cache"), keep_in_memory=False
        )
        built = temporary_folder(self.path)
        try:
            dataset.save_to_disk(str(built))
            swap_in(built, self.path, kind="dataset")
        except BaseException:
            remove_temporary(built)
            raise
        finally:
            remove_temporary(self._scratch)

    def abort(self) -> None:
        self._shard.abort()
        remove_temporary(self._scratch)
