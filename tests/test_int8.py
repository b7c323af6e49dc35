"""The INT8 export: calibrated on frames of the site's own recordings, offline, and its agreement with the
FP32 model recorded beside it for `auto` to read."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.fakes import REPO
from workers import engines
from workers.scenes import Actor, encode_scene

MODEL = REPO / "models" / "person.pt"


@pytest.mark.timeout(900)
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg tool makes the recordings")
def test_int8_export_is_calibrated_on_recordings_and_records_its_agreement_with_fp32(tmp_path):
    if not engines.exported_path(MODEL, "openvino").is_dir():
        pytest.fail(f"{MODEL} has no OpenVINO export: `make test` makes it")
    model = tmp_path / "models" / "person.pt"
    model.parent.mkdir()
    shutil.copyfile(MODEL, model)
    shutil.copyfile(MODEL.with_name(MODEL.name + ".json"), model.with_name(model.name + ".json"))
    shutil.copytree(engines.exported_path(MODEL, "openvino"), engines.exported_path(model, "openvino"))
    site = tmp_path / "recordings"
    for cam, actors in (("cam1", (Actor("man", 0.2, 1.0, 6.0),)), ("cam2", (Actor("man", 0.6, 0.0, 5.0),))):
        encode_scene(site / cam / f"{cam}_20251114_100000.mp4", actors, seconds=6, fps=10, noise=2.0)
    proc = subprocess.run([sys.executable, "-m", "workers.export_model", str(model), "--engines", "openvino",
                           "--int8", "--calibrate", str(site), "--frames", "8", "--check-seconds", "6"],
                          capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr
    folder = engines.exported_path(model, "openvino-int8")
    meta = json.loads((folder / "source.json").read_text())
    assert (folder / "model.xml").is_file() and (folder / "model.bin").is_file()
    assert meta["sha256"] == engines.source_digest(model) and meta["engine"] == "openvino-int8"
    assert meta["calibration"]["frames"] == 8 and len(meta["calibration"]["recordings"]) == 2
    agreement = meta["agreement"]
    assert agreement["recordings"] == 2 and isinstance(agreement["within_tolerance"], bool)
    assert "counts against FP32 on 2 recordings" in proc.stdout
    # INT8 weights: well under the FP32 model's size.
    assert (folder / "model.bin").stat().st_size < 0.5 * (engines.exported_path(model, "openvino") / "model.bin"
                                                         ).stat().st_size
    choice = engines.choose("auto", "cpu", model)
    assert choice.engine == ("openvino-int8" if agreement["within_tolerance"] else "openvino")


def test_int8_without_recordings_to_calibrate_on_exits_78(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "workers.export_model", str(MODEL), "--int8"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 78 and "--calibrate" in proc.stderr
