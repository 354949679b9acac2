"""Output paths that never cost the user data.

Every command that writes goes through here, so three promises hold everywhere:

1. **Nothing is deleted that wildfeedback did not write.** A file is written under
   a temporary name beside its target and renamed over it at the end. A folder
   (a Hugging Face dataset, the main job's output) is built in a fresh sibling
   temporary folder and swapped in at the end: the previous folder is moved
   aside first and removed only once the new one is in place, so a kill at any
   moment leaves the old output or the new one, never an empty folder. An
   existing non-empty folder is replaced only when it is a previous output of
   wildfeedback (it holds `MARKER`) or the user passed `--overwrite`.
2. **No output is an input.** `check_outputs` resolves every output (the
   errors and issues files too) against every input file before anything is
   read, and refuses with the two paths named.
3. **Two runs never share a temporary.** Temporary names carry the host, the
   process id and a random token; temporaries that a killed run of ours left
   behind (same host, process gone) are removed when the next run writes the
   same target.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from wildfeedback.errors import WildfeedbackError

MARKER = ".wildfeedback-output"  # in every folder wildfeedback writes as a whole
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.wf-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[^.]+\.(?:partial|old)$")


class OutputPathError(WildfeedbackError):
    """An output path that would overwrite an input, a foreign folder, or another output."""


def _host() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _prefix(target: Path) -> str:
    return f".{target.name}.wf-{_host()}-{os.getpid()}-"


def temporary_file(target: Path) -> Path:
    """A new, empty file beside `target` that no other run can be using."""
    with _writing_beside(target):
        handle, name = tempfile.mkstemp(prefix=_prefix(target), suffix=".partial", dir=target.parent)
        os.close(handle)
    return Path(name)


def write_text_atomically(path: Path, text: str) -> Path:
    """Write a small text file whole or not at all (a page, a rubric, a report)."""
    partial = temporary_file(path)
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except BaseException:
        remove_temporary(partial)
        raise
    return path


def temporary_folder(target: Path) -> Path:
    """A new, empty folder beside `target` that no other run can be using."""
    with _writing_beside(target):
        return Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".partial", dir=target.parent))


@contextmanager
def _writing_beside(target: Path) -> Iterator[None]:
    """Make `target`'s folder and clear our stale temporaries there; a folder that
    cannot be made or written is the user's error, named by the target, not by a
    temporary name they never chose."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputPathError(f"{target}: cannot create its folder {target.parent} "
                              f"({(error.strerror or str(error)).lower()}); choose another path") from None
    clean_stale_temporaries(target)
    try:
        yield
    except OSError as error:
        raise OutputPathError(f"{target}: cannot write in {target.parent} ({(error.strerror or str(error)).lower()}); "
                              "check its permissions or choose another path") from None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def clean_stale_temporaries(target: Path) -> list[Path]:
    """Remove the temporaries of `target` that a killed run of ours left behind.

    Only names in our own pattern, for this target, written on this host by a
    process that no longer exists. A folder moved aside (`.old`) whose swap was
    cut short by a kill is put back when the target is missing, never removed.
    """
    removed: list[Path] = []
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return removed
    for path in siblings:
        match = _TEMPORARY.match(path.name)
        if not match or match["target"] != target.name or match["host"] != _host():
            continue
        if _process_alive(int(match["pid"])):
            continue
        if path.name.endswith(".old") and not target.exists() and not target.is_symlink():
            os.replace(path, target)  # a swap killed between its two renames: the old output comes back
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def is_our_folder(path: Path) -> bool:
    return (path / MARKER).is_file()


def mark_as_ours(folder: Path, kind: str) -> None:
    """Sign a folder wildfeedback wrote, so a later run may replace it without `--overwrite`."""
    (folder / MARKER).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")


def check_folder_target(path: Path, *, overwrite: bool = False, what: str = "output") -> None:
    """Refuse a folder target that holds someone else's files.

    Replaceable: a missing path, an empty folder, a previous output of
    wildfeedback, or anything when `overwrite` is set (except a file, which
    is never silently turned into a folder).
    """
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputPathError(f"{path}: the {what} is written as a folder, but this path is a file or a link; "
                              "choose another path")
    if not path.exists() or overwrite or is_our_folder(path):
        return
    if any(path.iterdir()):
        raise OutputPathError(f"{path}: a folder that is not empty and was not written by wildfeedback; "
                              "choose another path, or pass --overwrite to replace it (its files will be deleted)")


def swap_in(built: Path, target: Path, kind: str) -> None:
    """Put the finished folder `built` at `target`, replacing what is there.

    The old folder is renamed aside first, the new one renamed in, and only
    then the old one deleted: two renames in one file system, so a kill leaves
    either output whole (and `clean_stale_temporaries` restores an old folder
    whose replacement never arrived).
    """
    mark_as_ours(built, kind)
    if not target.exists():
        os.replace(built, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".old", dir=target.parent))
    os.replace(target, aside)  # renaming onto an empty folder replaces it
    os.replace(built, target)
    shutil.rmtree(aside, ignore_errors=True)


def remove_temporary(path: Path) -> None:
    """Remove a temporary of ours (after an error or interruption)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_outputs(
    input_files: Iterable[Path],
    outputs: Iterable[Path | None],
    *,
    input_folders: Iterable[Path] = (),
    folder_outputs: Iterable[Path] = (),
) -> None:
    """Refuse, before anything is read, any output that is, holds or would be read as an input.

    - an output file that is an input file (the same file by any path or link);
    - two outputs that are the same file;
    - an output folder (replaced as a whole) that holds an input file;
    - an output inside an input folder: the next run over that folder would read it back.
    """
    inputs = [(_resolved(p), p) for p in input_files]
    folders = [(_resolved(p), p) for p in input_folders]
    seen: dict[Path, Path] = {}
    for output in outputs:
        if output is None:
            continue
        real = _resolved(output)
        if real in seen:
            raise OutputPathError(f"{output}: named for two outputs (also {seen[real]}); give each its own path")
        seen[real] = output
        for real_input, given in inputs:
            if real == real_input:
                raise OutputPathError(f"{output}: this output is the input file {given}; "
                                      "writing it would destroy the input: choose another path")
        for real_folder, given in folders:
            if real == real_folder:
                raise OutputPathError(f"{output}: this output is the input folder {given}; choose another path")
            if _inside(real, real_folder):
                raise OutputPathError(f"{output}: this output is inside the input folder {given}, so the next run "
                                      "over that folder would read it back as input; write it elsewhere")
    for folder in folder_outputs:
        real_folder = _resolved(folder)
        for real_input, given in inputs:
            if _inside(real_input, real_folder):
                raise OutputPathError(f"{folder}: this output folder holds the input file {given}; "
                                      "replacing the folder would destroy it: choose another path")
