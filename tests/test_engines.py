"""The CPU engines give the torch engine's answers, and the choice between them is never silent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.fakes import REPO
from workers import engines
from workers.errors import WorkerError
from workers.scenes import Actor, load_sprites, render

MODEL = REPO / "models" / "person.pt"
CLASS_MAP = {"Normal": "person", "Fall": "person"}
SCENES = [
    (Actor("man", 0.10, 0, 9), Actor("man", 0.60, 0, 9)),
    (Actor("man", 0.30, 0, 9, cut=0.3),),
    (Actor("woman", 0.66, 0, 9), Actor("man", 0.05, 0, 9)),
    (),
]


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} is missing: `make test` fetches it")
    sprites = load_sprites()
    return [render(actors, sprites, t) for actors in SCENES for t in (0.5, 1.3)]


@pytest.fixture(scope="module")
def torch_boxes(frames):
    engine = engines.load(engines.Choice("torch", "cpu", "test"), MODEL, CLASS_MAP, 640)
    return [engine.predict([f], conf=0.25, classes=[0, 1], agnostic=True)[0] for f in frames]


@pytest.mark.parametrize("name", ["openvino", "onnxruntime"])
def test_exported_engines_find_the_same_people_within_two_pixels(frames, torch_boxes, name):
    if engines.export_status(MODEL, name) is not None:
        pytest.fail(f"{engines.export_status(MODEL, name)} (`make test` makes it)")
    engine = engines.load(engines.Choice(name, "cpu", "test"), MODEL, CLASS_MAP, 640)
    for frame, want in zip(frames, torch_boxes, strict=True):
        [got] = engine.predict([frame], conf=0.25, classes=[0, 1], agnostic=True)
        assert len(got) == len(want)
        order_got = np.lexsort((got.xyxy[:, 1], got.xyxy[:, 0]))
        order_want = np.lexsort((want.xyxy[:, 1], want.xyxy[:, 0]))
        if len(want):
            assert np.abs(got.xyxy[order_got] - want.xyxy[order_want]).max() <= 2.0
            assert np.abs(got.confidence[order_got] - want.confidence[order_want]).max() < 0.02
        assert list(got.class_name) == list(want.class_name)
        assert (got.width, got.height) == (want.width, want.height)


def test_auto_takes_the_fastest_exported_engine_and_says_why():
    choice = engines.choose("auto", "cpu", MODEL)
    assert choice == engines.Choice("openvino", "cpu", "the fastest engine on this CPU")


def test_without_an_export_auto_takes_torch_and_says_so(tmp_path):
    model = tmp_path / "person.pt"
    shutil.copyfile(MODEL, model)
    choice = engines.choose("auto", "cpu", model)
    assert choice.engine == "torch" and "no exported model" in choice.reason
    assert "video-supervisor model export" in choice.reason
    assert choice.fallback and not engines.choose("auto", "cpu", MODEL).fallback


def test_an_export_of_another_pt_is_refused_as_stale(tmp_path):
    model = tmp_path / "person.pt"
    shutil.copyfile(MODEL, model)
    shutil.copytree(engines.exported_path(MODEL, "openvino"), engines.exported_path(model, "openvino"))
    data = model.read_bytes()
    model.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # retrained, say
    with pytest.raises(WorkerError) as err:
        engines.choose("openvino", "cpu", model)
    assert err.value.code == 78 and "made from another person.pt" in str(err.value)


def test_an_explicit_engine_without_its_model_exits_78_naming_the_fix(tmp_path):
    model = tmp_path / "person.pt"
    shutil.copyfile(MODEL, model)
    video = tmp_path / "cam" / "cam_20251114_100000.mp4"
    from workers.scenes import write_scene

    write_scene(video, [Actor("man", 0.1, 0, 2)], seconds=1)
    proc = subprocess.run([sys.executable, "-m", "workers.detect", f"--video={video}", "--camera=cam",
                           f"--out={tmp_path / 'out'}", f"--model={model}", "--engine=onnxruntime"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 78
    [line] = proc.stderr.strip().splitlines()
    assert "no onnxruntime model" in line and "video-supervisor model export" in line


def test_the_cpu_engine_runs_without_torch_and_the_summary_names_it(tmp_path):
    from workers.scenes import write_scene

    video = write_scene(tmp_path / "cam" / "cam_20251114_100000.mp4", [Actor("man", 0.1, 0, 2)], seconds=1)
    code = ("import sys; from workers import detect; rc = detect.main(sys.argv[1:]); "
            "print('torch imported:', 'torch' in sys.modules, file=sys.stderr); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, f"--video={video}", "--camera=cam",
                           f"--out={tmp_path / 'out'}", f"--model={MODEL}"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "torch imported: False" in proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["engine"]["name"] == "openvino" and summary["engine"]["threads"] >= 1
    assert summary["engine"]["reason"] == "the fastest engine on this CPU"
    assert 0 < summary["engine"]["load_seconds"] <= summary["timing"]["model_load_seconds"]


def test_a_fallback_to_torch_is_a_warning_in_the_supervisor_log(tmp_path):
    from supervisor.config import WorkerSettings
    from tests.fakes import make_settings
    from tests.test_scheduling import capture_logs, run_sup
    from workers.scenes import write_scene

    model = tmp_path / "person.pt"
    shutil.copyfile(MODEL, model)  # no exports beside this copy
    shutil.copyfile(MODEL.with_name("person.pt.json"), tmp_path / "person.pt.json")
    for minute in (0, 1):
        write_scene(tmp_path / "videos" / "cam" / f"cam_20251114_10{minute:02d}00.mp4", [Actor("man", 0.1, 0, 2)],
                    seconds=1)
    s = make_settings(tmp_path, worker=WorkerSettings(model=model, timeout_seconds=120))
    with capture_logs() as logs:
        code, _ = run_sup(s)
    assert code == 0
    [warning] = [e for e in logs if e["event"] == "engine_fallback"]  # said once, not once per job
    assert warning["engine"] == "torch" and "no exported model" in warning["reason"]
    [repeated] = [e for e in logs if e["event"] == "engine_fallback_repeated"]
    assert repeated["count"] == 2 and repeated["reason"] == warning["reason"]


@pytest.mark.parametrize(("agreement", "expected"), [
    (None, "openvino"),
    ({"within_tolerance": False, "recordings": 3, "differences": ["a.mp4 frame: peak 3 against 2"]}, "openvino"),
    ({"within_tolerance": True, "recordings": 3, "differences": []}, "openvino-int8"),
])
def test_auto_takes_the_int8_model_only_where_its_counts_agreed_with_fp32(tmp_path, agreement, expected):
    model = tmp_path / "person.pt"
    shutil.copyfile(MODEL, model)
    shutil.copytree(engines.exported_path(MODEL, "openvino"), engines.exported_path(model, "openvino"))
    int8 = engines.exported_path(model, "openvino-int8")
    shutil.copytree(engines.exported_path(MODEL, "openvino"), int8)  # the FP32 network stands in for it
    meta = json.loads((int8 / "source.json").read_text())
    (int8 / "source.json").write_text(json.dumps({**meta, "engine": "openvino-int8", "agreement": agreement}))
    choice = engines.choose("auto", "cpu", model)
    assert choice.engine == expected
    if expected == "openvino":
        assert "openvino-int8" in choice.reason and "passed over" in choice.reason
    else:
        assert "checked against FP32" in choice.reason
    assert engines.choose("openvino-int8", "cpu", model).engine == "openvino-int8"  # insisting always may
