from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.protocol.rois import (
    WHOLE_FRAME,
    RoiError,
    check_frame_size,
    load_rois,
    parse_rois,
    point_in_polygon,
    self_intersects,
)
from tests.fakes import REPO


def test_the_shipped_example_is_valid_and_pixels_are_normalised():
    cfg = load_rois(REPO / "etc" / "rois.toml")
    assert [r.name for r in cfg.regions_for("camera_35")] == ["counter", "door"]
    assert cfg.regions_for("camera_35")[1].min_dwell_seconds == 2
    tables = cfg.regions_for("camera_22")[0]
    assert tables.points[0] == pytest.approx((100 / 1280, 300 / 720))


def test_a_camera_without_regions_counts_the_whole_frame():
    cfg = parse_rois({"cameras": {"cam": {"regions": []}}}, "x")
    assert [r.points for r in cfg.regions_for("cam")] == [WHOLE_FRAME]
    assert [r.points for r in cfg.regions_for("other")] == [WHOLE_FRAME]
    assert load_rois(None).regions_for("any")[0].classes == ("person",)


def test_json_has_the_same_shape(tmp_path):
    p = tmp_path / "rois.json"
    p.write_text(json.dumps({"cameras": {"c": {"regions": [{"name": "a", "points": [[0, 0], [1, 0], [0, 1]]}]}}}))
    assert load_rois(p).regions_for("c")[0].name == "a"


def region(**kw):
    r = {"name": "door", "points": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]}
    r.update(kw)
    return {"cameras": {"camera_35": {"regions": [r]}}}


@pytest.mark.parametrize(
    ("data", "where", "reason"),
    [
        (region(points=[[0, 0], [1, 1]]), "camera 'camera_35', region 'door'", "at least 3 points, got 2"),
        (region(points=[[0, 0], [1.2, 0], [1, 1]]), "camera 'camera_35', region 'door'", "out of range 0..1"),
        (region(points=[[0, 0], [1, 1], [1, 0], [0, 1]]), "camera 'camera_35', region 'door'", "crosses itself"),
        (region(points=[[0, 0], [0.5, 0.5], [1, 1]]), "camera 'camera_35', region 'door'", "no area"),
        (region(points=[[0, 0], [1, 0], [1, 0], [0, 1]]), "camera 'camera_35', region 'door'", "repeats a point"),
        (region(points=[[0, 0], "x", [1, 1]]), "camera 'camera_35', region 'door'", "point #2"),
        (region(points=[[0, 0], [2000, 0], [0, 100]], frame_size=[1920, 1080]), "camera 'camera_35', region 'door'",
         "outside the 1920x1080 frame"),
        (region(classes=[]), "camera 'camera_35', region 'door'", "classes must be"),
        (region(min_dwell_seconds=-1), "camera 'camera_35', region 'door'", "min_dwell_seconds"),
        (region(colour="red"), "camera 'camera_35', region 'door'", "unknown key 'colour'"),
        (region(name=""), "camera 'camera_35', region #1", "non-empty name"),
        ({"cameras": {"c": {"regions": [{"name": "a", "points": [[0, 0], [1, 0], [0, 1]]},
                                        {"name": "a", "points": [[0, 0], [1, 0], [1, 1]]}]}}},
         "camera 'c'", "two regions are named 'a'"),
        ({"cameras": {"c": {"zones": []}}}, "camera 'c'", "unknown key 'zones'"),
        ({"camera": {}}, "camera", "unknown key"),
    ],
)
def test_mistakes_name_the_camera_region_and_reason(data, where, reason):
    with pytest.raises(RoiError) as info:
        parse_rois(data, "rois.toml")
    assert info.value.where == where
    assert reason in info.value.reason
    assert str(info.value).startswith(f"rois.toml: {where}: ")


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(RoiError, match="cannot read"):
        load_rois(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[cameras.c\n")
    with pytest.raises(RoiError, match="invalid TOML"):
        load_rois(bad)


def test_polygon_helpers():
    square = [(0, 0), (1, 0), (1, 1), (0, 1)]
    assert point_in_polygon(0.5, 0.5, square) and not point_in_polygon(1.5, 0.5, square)
    concave = [(0, 0), (1, 0), (1, 1), (0.5, 0.4), (0, 1)]
    assert not point_in_polygon(0.5, 0.8, concave) and point_in_polygon(0.2, 0.3, concave)
    assert self_intersects([(0, 0), (1, 1), (1, 0), (0, 1)])
    assert not self_intersects(concave)


def _pixel_rois(tmp_path, frame_size: str, camera: str = "cam") -> Path:
    path = tmp_path / "rois.toml"
    path.write_text(f'[cameras."{camera}"]\nframe_size = {frame_size}\n[[cameras."{camera}".regions]]\n'
                    'name = "till"\npoints = [[0, 360], [640, 360], [640, 720], [0, 720]]\n')
    return path


def test_pixel_regions_scale_to_a_video_of_the_same_aspect_ratio(tmp_path):
    regions = load_rois(_pixel_rois(tmp_path, "[1280, 720]")).regions_for("cam")
    check_frame_size(regions, 1920, 1080, "cam", "rois.toml")  # 16:9 both: scaled, accepted
    check_frame_size(regions, 854, 480, "cam", "rois.toml")  # within 1 %
    assert regions[0].points[2] == (0.5, 1.0)


def test_pixel_regions_on_a_video_of_another_aspect_ratio_are_refused_naming_both_sizes(tmp_path):
    regions = load_rois(_pixel_rois(tmp_path, "[1280, 720]")).regions_for("cam")
    with pytest.raises(RoiError) as err:
        check_frame_size(regions, 1440, 1080, "cam", "rois.toml")
    message = str(err.value)
    assert "region 'till'" in message and "1280x720" in message and "1440x1080" in message
    assert "aspect ratio" in message


def test_regions_of_one_camera_drawn_on_different_shapes_are_refused_at_load(tmp_path):
    path = tmp_path / "rois.toml"
    path.write_text('[cameras.cam]\nframe_size = [1280, 720]\n'
                    '[[cameras.cam.regions]]\nname = "a"\npoints = [[0, 0], [10, 0], [10, 10]]\n'
                    '[[cameras.cam.regions]]\nname = "b"\nframe_size = [1440, 1080]\n'
                    'points = [[0, 0], [10, 0], [10, 10]]\n')
    with pytest.raises(RoiError, match=r"region 'b'.*another aspect ratio"):
        load_rois(path)
