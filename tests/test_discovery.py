from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from supervisor.jobs.discovery import scan
from supervisor.protocol.names import PathParser
from tests.fakes import make_video


@pytest.mark.parametrize(
    ("rel", "camera", "when"),
    [
        ("camera_35/camera_35_20251114_143000.mp4", "camera_35", datetime(2025, 11, 14, 14, 30, 0)),
        ("camera_35/20251114143000.mkv", "camera_35", datetime(2025, 11, 14, 14, 30, 0)),
        ("camera_35_20251114_143000.mp4", "camera_35", datetime(2025, 11, 14, 14, 30, 0)),
        ("front door/2025-11-14_14-30-05.ts", "front door", datetime(2025, 11, 14, 14, 30, 5)),
        ("camera_22/2025-11-14/14-30-00.mp4", "camera_22", datetime(2025, 11, 14, 14, 30, 0)),
        ("camera_22/20251114/143000.avi", "camera_22", datetime(2025, 11, 14, 14, 30, 0)),
        ("camera_9/clip.mov", "camera_9", None),
    ],
)
def test_default_parser_reads_camera_and_time_from_the_path(rel, camera, when):
    assert PathParser().parse(Path(rel)) == (camera, when)


def test_custom_pattern_overrides_the_default():
    parser = PathParser(r"site/(?P<camera>cam\d+)-(?P<timestamp>\d{14})")
    assert parser.parse(Path("site/cam7-20251114080910.mp4")) == ("cam7", datetime(2025, 11, 14, 8, 9, 10))
    assert parser.parse(Path("elsewhere/x.mp4")) == (None, None)


def test_odd_camera_ids_are_refused():
    assert PathParser(r"(?P<camera>.*)/").parse(Path("../x.mp4"))[0] is None


def do_scan(root: Path, **kw):
    kw.setdefault("extensions", ("mp4", "mkv", "avi", "mov", "ts"))
    kw.setdefault("settle_seconds", 30)
    kw.setdefault("now", time.time())
    kw.setdefault("parser", PathParser())
    return scan(root, **kw)


def test_scan_orders_oldest_first_and_skips_what_is_not_a_finished_video(tmp_path):
    v = tmp_path / "videos"
    make_video(v / "camera_2/camera_2_20251114_100000.mp4")
    make_video(v / "camera_1/camera_1_20251114_120000.mp4")
    make_video(v / "camera_1/camera_1_20251113_230000.mkv")
    make_video(v / "camera_1/.hidden_20251113_230000.mp4")
    make_video(v / "camera_1/notes.txt")
    make_video(v / "camera_1/camera_1_20251114_130000.mp4.part")
    (v / "camera_1/camera_1_20251114_140000.mp4").write_bytes(b"")  # zero bytes
    make_video(v / "camera_1/camera_1_20251114_150000.mp4", age=1)  # still being written
    (v / "camera_1/dir_20251114_160000.mp4").mkdir()  # a directory named like a video
    result = do_scan(v)
    assert [p.path.name for p in result.videos] == [
        "camera_1_20251113_230000.mkv", "camera_2_20251114_100000.mp4", "camera_1_20251114_120000.mp4"]
    assert {p.name for p in result.unsettled} == {"camera_1_20251114_140000.mp4", "camera_1_20251114_150000.mp4"}


def test_settled_file_is_picked_up_once_stable(tmp_path):
    v = tmp_path / "videos"
    make_video(v / "cam/cam_20251114_100000.mp4", age=0)
    assert do_scan(v, settle_seconds=5).videos == []
    assert len(do_scan(v, settle_seconds=5, now=time.time() + 6).videos) == 1


@pytest.mark.faults
def test_symlinks_are_not_followed_out_of_the_tree(tmp_path):
    outside = tmp_path / "outside"
    make_video(outside / "cam_20251114_100000.mp4")
    v = tmp_path / "videos"
    (v / "cam").mkdir(parents=True)
    os.symlink(outside, v / "linked_dir")
    os.symlink(outside / "cam_20251114_100000.mp4", v / "cam" / "cam_20251114_110000.mp4")
    assert do_scan(v).videos == []


def test_camera_filter_and_mtime_fallback(tmp_path):
    v = tmp_path / "videos"
    make_video(v / "camera_35/clip.mp4")
    make_video(v / "camera_22/clip.mp4")
    result = do_scan(v, cameras=["camera_35"])
    assert [x.camera for x in result.videos] == ["camera_35"]
    assert result.videos[0].time_from_mtime
    mtime = (v / "camera_35/clip.mp4").stat().st_mtime
    assert result.videos[0].recorded_at == datetime.fromtimestamp(mtime).replace(microsecond=0)


def test_files_without_a_camera_are_reported_not_queued(tmp_path):
    v = tmp_path / "videos"
    make_video(v / "20251114143000.mp4")
    result = do_scan(v)
    assert result.videos == []
    assert result.skipped and "no camera id" in result.skipped[0][1]


def test_unicode_spaces_quotes_and_dashes_in_names(tmp_path):
    v = tmp_path / "videos"
    names = ["cam é/-x 'q' \"d\"_20251114_100000.mp4", "cam é/--help_20251114_110000.mp4"]
    for n in names:
        make_video(v / n)
    result = do_scan(v)
    assert [x.camera for x in result.videos] == ["cam é", "cam é"]
