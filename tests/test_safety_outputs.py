"""Regression tests for issue 10's data-loss cases: wildfeedback never deletes or
overwrites what it did not write, never writes over its inputs, and two runs
never mix. Each case runs the real console script, as a careless user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from wildfeedback.io.outputs import MARKER, OutputPathError, check_outputs, clean_stale_temporaries, temporary_file

SCRIPT = str(Path(sys.executable).with_name("wildfeedback"))


def wildfeedback(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


def logs(path: Path, n: int = 30, prefix: str = "g") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(
        orjson.dumps({"id": f"{prefix}{i}", "conversations": [{"from": "human", "value": f"hi {i}"},
                                                             {"from": "gpt", "value": "hello"}]}) + b"\n"
        for i in range(n)
    ))
    return path


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Refused with exit 2, one error line naming what is wrong, no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def no_temporaries(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if ".wf-" in p.name] == []


# 1. An existing folder named by -o


def test_a_folder_that_is_not_ours_is_refused_and_kept(tmp_path: Path) -> None:
    source = logs(tmp_path / "in.jsonl")
    target = tmp_path / "d"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    one_line_error(wildfeedback("ingest", source, "-o", target), str(target), "--overwrite")
    assert (target / "keep.txt").read_text() == "mine"
    no_temporaries(tmp_path)


def test_overwrite_replaces_a_foreign_folder_only_when_asked(tmp_path: Path) -> None:
    import datasets

    source = logs(tmp_path / "in.jsonl")
    target = tmp_path / "d"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = wildfeedback("ingest", source, "-o", target, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert not (target / "keep.txt").exists() and (target / MARKER).is_file()
    assert len(datasets.load_from_disk(str(target))) == 30
    no_temporaries(tmp_path)


def test_the_input_folder_as_output_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    logs(folder / "a.jsonl")
    one_line_error(wildfeedback("ingest", folder, "-o", folder, "--on-error", "skip"), "is the input folder")
    assert sorted(p.name for p in folder.iterdir()) == ["a.jsonl"]


def test_a_previous_dataset_of_ours_is_replaced_without_asking(tmp_path: Path) -> None:
    import datasets

    target = tmp_path / "ds"
    assert wildfeedback("ingest", logs(tmp_path / "a.jsonl", 30), "-o", target).returncode == 0
    result = wildfeedback("ingest", logs(tmp_path / "b.jsonl", 12, prefix="b"), "-o", target)
    assert result.returncode == 0, result.stderr
    assert datasets.load_from_disk(str(target))["id"] == [f"b{i}" for i in range(12)]
    no_temporaries(tmp_path)


KILLED_WHILE_SAVING = textwrap.dedent("""
    import os, signal, sys
    import datasets
    from wildfeedback.io.ingest import ingest

    real_save = datasets.Dataset.save_to_disk

    def save_then_die(self, path, **kwargs):
        real_save(self, path, **kwargs)          # the new dataset is half-way to its place
        os.kill(os.getpid(), signal.SIGKILL)

    datasets.Dataset.save_to_disk = save_then_die
    ingest([sys.argv[1]], sys.argv[2])
""")


def test_a_kill_while_the_dataset_is_finalised_keeps_the_previous_one(tmp_path: Path) -> None:
    import datasets

    target = tmp_path / "ds"
    assert wildfeedback("ingest", logs(tmp_path / "a.jsonl", 30), "-o", target).returncode == 0
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_SAVING, str(logs(tmp_path / "b.jsonl", 5, "b")),
                             str(target)], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert len(datasets.load_from_disk(str(target))) == 30  # the previous dataset, whole
    assert any(".wf-" in p.name for p in tmp_path.iterdir())  # the killed run's temporaries...
    assert wildfeedback("ingest", tmp_path / "b.jsonl", "-o", target).returncode == 0
    no_temporaries(tmp_path)  # ...are cleaned by the next run that writes the same output
    assert len(datasets.load_from_disk(str(target))) == 5


def test_a_swap_cut_between_its_renames_gets_the_old_folder_back(tmp_path: Path) -> None:
    """The old output moved aside, the new one never renamed in: the next run restores it."""
    target = tmp_path / "ds"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    aside = temporary_file(target)  # a name in our pattern; make it look like a dead run's `.old` folder
    aside.unlink()
    old = aside.with_name(aside.name.replace(f"-{os.getpid()}-", f"-{pid}-")).with_suffix(".old")
    old.mkdir()
    (old / "data.txt").write_text("previous output")
    clean_stale_temporaries(target)
    assert (target / "data.txt").read_text() == "previous output"


# 2. Outputs that are inputs


def test_output_equal_to_an_input_is_refused(tmp_path: Path) -> None:
    source = logs(tmp_path / "in.jsonl")
    one_line_error(wildfeedback("ingest", source, "-o", source), "is the input file")
    assert len(source.read_bytes().splitlines()) == 30
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    one_line_error(wildfeedback("ingest", source, "-o", link), "is the input file")
    assert len(source.read_bytes().splitlines()) == 30


def test_errors_file_equal_to_an_input_is_refused(tmp_path: Path) -> None:
    source = logs(tmp_path / "in.jsonl", 500)
    result = wildfeedback("ingest", source, "-o", tmp_path / "out.jsonl", "--errors", source, "--on-error", "skip")
    one_line_error(result, "is the input file")
    assert len(source.read_bytes().splitlines()) == 500


def test_the_default_errors_file_as_an_input_is_refused(tmp_path: Path) -> None:
    previous = logs(tmp_path / "prev.errors.jsonl")
    result = wildfeedback("ingest", previous, "-o", tmp_path / "prev.jsonl", "--on-error", "skip")
    one_line_error(result, "prev.errors.jsonl", "is the input file")
    assert len(previous.read_bytes().splitlines()) == 30


def test_an_output_inside_an_input_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    logs(folder / "a.jsonl")
    one_line_error(wildfeedback("ingest", folder, "-o", folder / "clean.jsonl"), "inside the input folder")
    assert sorted(p.name for p in folder.iterdir()) == ["a.jsonl"]


def test_an_output_folder_holding_an_input_is_refused(tmp_path: Path) -> None:
    source = logs(tmp_path / "ds" / "in.jsonl")
    (tmp_path / "ds" / MARKER).write_text("{}")  # even a folder of ours
    one_line_error(wildfeedback("ingest", source, "-o", tmp_path / "ds"), "holds the input file")
    assert len(source.read_bytes().splitlines()) == 30


def test_issues_file_equal_to_the_output_is_refused(tmp_path: Path) -> None:
    source = logs(tmp_path / "in.jsonl")
    output = tmp_path / "signals.jsonl"
    result = wildfeedback("signals", "detect", source, "-o", output, "--issues", output)
    one_line_error(result, "named for two outputs")
    assert not output.exists()


def test_check_outputs_lets_distinct_paths_through(tmp_path: Path) -> None:
    source = logs(tmp_path / "in.jsonl")
    check_outputs([source], [tmp_path / "out.jsonl", tmp_path / "out.errors.jsonl", None])
    with pytest.raises(OutputPathError):
        check_outputs([source], [tmp_path / "x" / ".." / "in.jsonl"])


def test_run_refuses_a_foreign_output_folder(tmp_path: Path) -> None:
    from wildfeedback.run import RunConfig, run_pipeline

    target = tmp_path / "Documents"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputPathError, match="--overwrite"):
        run_pipeline(RunConfig(inputs=[str(logs(tmp_path / "in.jsonl"))], output=target))
    assert (target / "thesis.tex").read_text() == "years of work"
    no_temporaries(tmp_path)


# 3. Two runs writing the same output


def test_two_runs_writing_one_output_never_mix(tmp_path: Path) -> None:
    a = logs(tmp_path / "a.jsonl", 20_000, prefix="a")
    b = logs(tmp_path / "b.jsonl", 20_000, prefix="b")
    output = tmp_path / "out.jsonl"
    jobs = [subprocess.Popen([SCRIPT, "ingest", str(source), "-o", str(output)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) for source in (a, b)]
    assert [job.wait(timeout=300) for job in jobs] == [0, 0]
    ids = [orjson.loads(line)["id"] for line in output.read_bytes().splitlines()]  # every line whole
    assert ids in ([f"a{i}" for i in range(20_000)], [f"b{i}" for i in range(20_000)])  # one run's output, whole
    no_temporaries(tmp_path)


def test_temporaries_of_killed_runs_are_cleaned_but_live_ones_kept(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    ours_alive = temporary_file(output)  # this process is alive: its temporary stays
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = ours_alive.with_name(ours_alive.name.replace(f"-{os.getpid()}-", f"-{int(dead.stdout)}-"))
    killed.write_text("half a line")
    not_ours = tmp_path / ".out.jsonl.partial"  # another tool's name: never touched
    not_ours.write_text("someone else's")
    assert wildfeedback("ingest", logs(tmp_path / "in.jsonl"), "-o", output).returncode == 0
    assert ours_alive.exists() and not killed.exists() and not_ours.exists()


# 13. The operating system says no: one line naming the path


def test_an_unwritable_output_is_one_line(tmp_path: Path) -> None:
    source = logs(tmp_path / "in.jsonl")
    one_line_error(wildfeedback("ingest", source, "-o", source / "x.jsonl"), f"{source}/x.jsonl", "cannot create")
    one_line_error(wildfeedback("ingest", source, "-o", "/sys/x.jsonl"), "/sys/x.jsonl", "cannot write")
