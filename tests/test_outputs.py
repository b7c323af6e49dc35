from __future__ import annotations

import os

from workers.outputs import AtomicOutputs


def test_nothing_is_visible_until_commit_and_then_everything_is(tmp_path):
    out = AtomicOutputs(tmp_path / "o")
    out.open("counts.csv").write("a,b\n")
    out.open("summary.json").write("{}")
    assert sorted(p.name for p in (tmp_path / "o").iterdir() if not p.name.startswith(".")) == []
    out.commit()
    assert sorted(os.listdir(tmp_path / "o")) == ["counts.csv", "summary.json"]
    assert (tmp_path / "o" / "counts.csv").read_text() == "a,b\n"


def test_abort_leaves_nothing_and_keeps_an_earlier_complete_result(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "summary.json").write_text('{"old": true}')
    out = AtomicOutputs(tmp_path / "o")
    out.open("summary.json").write("{partial")
    out.abort()
    assert os.listdir(tmp_path / "o") == ["summary.json"]
    assert (tmp_path / "o" / "summary.json").read_text() == '{"old": true}'


def test_temporary_files_of_a_killed_attempt_are_cleaned_up(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / ".counts.csv.12345.tmp").write_text("half")
    AtomicOutputs(tmp_path / "o")
    assert os.listdir(tmp_path / "o") == []
