"""The IFLLM behaviour archive reader: rows, members, tasks, and damaged archives.

Damaged copies are written to pytest's tmp_path: the real archive cut short, and a
small archive re-packed from the real archive's first task (six real members)
with its compressed bytes, a tar header, or a member's rows damaged.
"""

from __future__ import annotations

import csv
import io
import lzma
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared
from wildfeedback.implicit.ifllm_archive import (
    ArchiveError,
    ArchiveReport,
    parse_abs,
    parse_member,
    parse_rel,
    read_behavior_archive,
)

ARCHIVE = ("ifllm", "ifllm_pairwise_behavior.tar.xz")


def test_abs_rows():
    assert parse_abs("500.45,499.4,11645.199999988,1765680654238") == (500.45, 499.4, 11645.199999988, 1765680654238)
    assert parse_abs("-27.79,384.4,1.5,1765680781408")[0] == -27.79  # gaze off screen is real
    with pytest.raises(ValueError, match="has 3 fields"):
        parse_abs("1,2,3")
    with pytest.raises(ValueError, match="not a number"):
        parse_abs("1,x,3,4")
    with pytest.raises(ValueError, match="not a number"):
        parse_abs("1,2,3,nan")


def test_rel_rows_both_layouts():
    row = parse_rel('480.46,136.08,"ish generating, their",105,11645.2,0,1765680654244', 7)
    assert row == (480.46, 136.08, "ish generating, their", 105, 11645.2, 0, 1765680654244.0, False)
    assert parse_rel("-1,-1,,,11645.2,1,1765680654244", 7)[2:4] == ("", -1)
    old = parse_rel("480.22,164.87,\"answer. The AI's re\",125,2753.6,1757445219915", 6)
    assert old[3] == 125 and old[5] == -1  # the first page version wrote no validity flag
    assert parse_rel("87.81,429.83,,,51029.8,1,1765701385470", 7)[2:4] == ("", -1)  # inside, no caret


def test_rel_rows_with_unescaped_quotes_are_recovered():
    # A snippet ending in a quote: an RFC 4180 reader takes `""` for an escaped quote and runs on into the
    # next line (two rows become one record of 3 fields: the README's "malformed rows").
    rows = "580.4,94.95,\"r's Play.\"\",608,131052.5,0,1760542578275\n-1,-1,,,131239.3,0,1760542578462\n"
    assert [len(r) for r in csv.reader(io.StringIO(rows))] == [3]
    first, second = rows.splitlines()
    assert parse_rel(first, 7) == (580.4, 94.95, "r's Play.\"", 608, 131052.5, 0, 1760542578275.0, True)
    assert parse_rel(second, 7)[4] == 131239.3
    box_x, _, text, char, _, valid, _, repaired = parse_rel(
        '125.51,194.66,"3. **"Annie\'s Song"*",232,183072.8,1,1760543293402', 7)
    assert (box_x, text, char, valid, repaired) == (125.51, "3. **\"Annie's Song\"*", 232, 1, True)
    assert parse_rel("473.63,274.62,20240620},161,14975,1,1763139971381", 7)[2:] == (
        "20240620}", 161, 14975.0, 1, 1763139971381.0, True)  # 383 real rows lack the page's quotes


@pytest.mark.parametrize(("line", "message"), [
    ("1,2,3", "has 3 fields"),
    ('1,2,"a",x,3,1,1765680654244', "not a whole number"),
    ('1,2,"a",3,4,7,1765680654244', "not 0 or 1"),
    ('1,y,"a",3,4,1,1765680654244', "not a number"),
    ('-1,-1,"a",3,4,1,1765680654244', "outside the box"),
])
def test_bad_rel_rows_say_why(line: str, message: str):
    with pytest.raises(ValueError, match=message):
        parse_rel(line, 7)


def test_member_counts_duplicates_repairs_and_rejections():
    rejected: list = []
    data = (b'1,2,"ab",0,10,1,1000\n'
            b'1,2,"ab",0,10,1,1000\n'  # an exact duplicate: dropped, counted
            b'3,4,"a "b" c",5,20,1,1001\n'  # unescaped quotes: recovered, counted
            b'garbage\n'
            b'\n'
            b'5,6,"\xff",1,30,1,1002\n'  # not UTF-8
            b'-1,-1,,,40,0,1003\n')
    member = parse_member("user_behavior/u/1/rel_gaze_one.csv", "rel_gaze_one", data, "a.tar.xz", rejected, True)
    r = member.report
    assert (r.rows, r.parsed, r.duplicates, r.repaired, r.rejected, r.layout) == (7, 3, 1, 1, 3, 7)
    assert [x.location.line for x in rejected] == [6, 4, 5]
    assert rejected[1].describe() == ("a.tar.xz:user_behavior/u/1/rel_gaze_one.csv, line 4: "
                                      "rel_gaze_one.csv row has 1 fields, a rel_* row of this member has 7")
    assert "not valid UTF-8" in rejected[0].reason and rejected[2].reason.endswith("is empty")
    assert member.text == ["ab", 'a "b" c', ""]
    assert member.columns["char"].tolist() == [0, 5, -1]
    assert member.columns["valid"].tolist() == [1, 1, 0]


def _write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:xz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_task_is_joined_across_its_files(tmp_path: Path):
    """Rows of one tick share page_ms; files come out of order; abs_gaze holds each row twice."""
    base = "user_behavior/w1/7/"
    members = {
        base + "abs_gaze.csv": b"10,20,200,1002\n11,21,100,1001\n10,20,200,1002\n11,21,100,1001\n",
        base + "abs_mouse.csv": b"5,5,100,1001\n6,6,200,1002\n",
        base + "rel_gaze_one.csv": b'-1,-1,,,200,1,1003\n4,5,"xy",3,100,1,1002\n',
        base + "rel_gaze_two.csv": b'1,2,"zz",7,200,1,1003\n-1,-1,,,100,1,1002\n',
        base + "rel_mouse_left.csv": b"-1,-1,,,100,0,1002\n-1,-1,,,200,0,1003\n",
        base + "rel_mouse_right.csv": b'-1,-1,,,100,0,1002\n9,9,"q",1,200,0,1003\n',
        base + "notes.txt": b"not a trace file",
    }
    report = ArchiveReport("x")
    (task,) = read_behavior_archive(_write_tar(tmp_path / "t.tar.xz", members), report)
    assert (task.user_id, task.task_id, task.boxes, task.unmatched) == ("w1", "7", 2, 0)
    g = task.gaze
    assert g.t.tolist() == [1002, 1003] and g.visible_ms.tolist() == [100, 200]
    assert g.box.tolist() == [0, 1] and g.char.tolist() == [3, 7] and g.text == ["xy", "zz"]
    assert g.x.tolist() == [11, 10] and g.valid.tolist() == [1, 1]
    assert task.mouse.box.tolist() == [-1, 1] and task.mouse.x.tolist() == [5, 6]
    assert report.totals()["duplicates"] == 2 and report.skipped_members == [base + "notes.txt"]


def test_a_row_missing_from_one_file_is_counted_not_guessed(tmp_path: Path):
    base = "user_behavior/w1/9/"
    members = {
        base + "abs_gaze.csv": b"10,20,100,1001\n10,20,200,1002\n",
        base + "abs_mouse.csv": b"5,5,100,1001\n6,6,200,1002\n",
        base + "rel_gaze.csv": b'-1,-1,,,100,1,1002\n-1,-1,,,200,1,1003\n',
        base + "rel_mouse.csv": b'4,5,"xy",3,100,1,1002\n',
    }
    report = ArchiveReport("x")
    (task,) = read_behavior_archive(_write_tar(tmp_path / "t.tar.xz", members), report)
    assert task.boxes == 1 and len(task.gaze) == 2 and len(task.mouse) == 1
    assert task.unmatched == 1 and report.unmatched == 1  # the abs_mouse row at page_ms 200 has no rel_mouse row


@pytest.fixture(scope="module")
def first_task_members() -> list[tuple[tarfile.TarInfo, bytes]]:
    """The real archive's first task directory: its six members, read from the archive (no disk)."""
    out = []
    with tarfile.open(shared(*ARCHIVE), "r:xz") as tar:
        for member in tar:
            if member.isfile():
                stream = tar.extractfile(member)
                assert stream is not None
                out.append((member, stream.read()))
            if len(out) == 6:
                return out
    raise AssertionError("the archive has fewer than six members")


def _repack(members: list[tuple[tarfile.TarInfo, bytes]], replace: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            data = (replace or {}).get(info.name.rsplit("/", 1)[-1], data)
            copy = tarfile.TarInfo(info.name)
            copy.size = len(data)
            tar.addfile(copy, io.BytesIO(data))
    return buffer.getvalue()


def test_repacked_real_task_reads(tmp_path: Path, first_task_members):
    path = tmp_path / "first.tar.xz"
    path.write_bytes(lzma.compress(_repack(first_task_members)))
    report = ArchiveReport(str(path))
    (task,) = read_behavior_archive(path, report)
    assert (task.user_id, task.task_id) == ("worker_f972316e", "183")
    assert len(task.gaze) == len(task.mouse) == 2033
    assert report.totals()["duplicates"] == 2033 and report.totals()["rejected"] == 0
    assert np.all(np.diff(task.gaze.t) >= 0)


def test_cut_short_archive_names_the_member(tmp_path: Path):
    cut = tmp_path / "cut.tar.xz"
    with open(shared(*ARCHIVE), "rb") as stream:
        cut.write_bytes(stream.read(2_000_000))
    read = []
    with pytest.raises(ArchiveError, match=r"member user_behavior/worker_\w+/\d+/\w+\.csv \(data at tar offset \d+\) "
                                           r"is damaged or cut short: EOFError"):
        for task in read_behavior_archive(cut):
            read.append(task.task_id)
    assert len(read) >= 1  # complete tasks before the break were given


def test_damaged_compressed_bytes_name_the_member(tmp_path: Path, first_task_members):
    packed = bytearray(lzma.compress(_repack(first_task_members)))
    middle = len(packed) // 2
    packed[middle : middle + 16] = bytes(b ^ 0xFF for b in packed[middle : middle + 16])
    path = tmp_path / "damaged.tar.xz"
    path.write_bytes(bytes(packed))
    with pytest.raises(ArchiveError, match=r"member user_behavior/worker_f972316e/183/\w+\.csv .* LZMAError"):
        list(read_behavior_archive(path))


def test_damaged_tar_header_is_not_taken_for_the_end(tmp_path: Path, first_task_members):
    raw = bytearray(_repack(first_task_members))
    third = tarfile.open(fileobj=io.BytesIO(bytes(raw))).getmembers()[2]
    raw[third.offset + 148 : third.offset + 156] = b"XXXXXXXX"  # its checksum
    path = tmp_path / "header.tar.xz"
    path.write_bytes(lzma.compress(bytes(raw)))
    second = first_task_members[1][0].name
    with pytest.raises(ArchiveError, match=f"unreadable tar header at offset {third.offset} after member {second}"):
        list(read_behavior_archive(path))


def test_damaged_rows_in_a_real_member_are_counted(tmp_path: Path, first_task_members):
    """Bytes damaged inside a member (the compression intact): its bad rows are rejected with their lines."""
    original = dict((i.name.rsplit("/", 1)[-1], d) for i, d in first_task_members)["rel_gaze_one.csv"]
    lines = original.split(b"\n")
    lines[9] = b"\x00\xfe" + lines[9][2:]
    lines[99] = lines[99][: len(lines[99]) // 2]
    path = tmp_path / "rows.tar.xz"
    path.write_bytes(lzma.compress(_repack(first_task_members, {"rel_gaze_one.csv": b"\n".join(lines)})))
    report = ArchiveReport(str(path))
    (task,) = read_behavior_archive(path, report)
    assert [(r.location.path.rsplit("/", 1)[-1], r.location.line) for r in report.rejected_rows] == [
        ("rel_gaze_one.csv", 10), ("rel_gaze_one.csv", 100)]
    member = next(m for m in report.members if m.member.endswith("rel_gaze_one.csv"))
    assert (member.rows, member.rejected, member.parsed) == (2033, 2, 2031)
    assert task.unmatched == 2 * 2  # the two ticks lose their rel_gaze_two and abs_gaze rows too (gaze is joined apart from mouse)
    assert len(task.gaze) == 2031
