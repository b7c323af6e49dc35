"""The real unit file: systemd-analyze checks, then a real systemd (in a throw-away container)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes import REPO, make_video, read_runs

UNIT = REPO / "systemd" / "video-supervisor.service"
GUEST = Path("/srv/vs-test")
GUEST_REPO = Path("/opt/vs-repo")  # the checkout may live under /tmp, which PrivateTmp= hides
GUEST_PYTHON = Path("/opt/vs-python")  # this machine's Python may live under /root, which ProtectHome= hides


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: `make test` installs it (Debian package systemd)")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def rendered_unit(tmp: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at this checkout (verify checks that the program exists)."""
    text = UNIT.read_text() if text is None else text
    text = text.replace("/opt/video-supervisor/bin/video-supervisor", str(Path(sys.executable).parent /
                                                                          "video-supervisor"))
    out = tmp / "video-supervisor.service"
    out.write_text(text)
    return out


def test_unit_file_verifies_without_a_single_warning(tmp_path):
    proc = analyze("verify", str(rendered_unit(tmp_path)))
    assert proc.returncode == 0
    assert proc.stdout + proc.stderr == ""


def test_unit_file_security_exposure_is_ok_without_hiding_the_gpu(tmp_path):
    text = UNIT.read_text()
    assert "PrivateDevices=yes" not in text and "DeviceAllow=char-nvidia* rw" in text
    proc = analyze("security", "--offline=yes", str(rendered_unit(tmp_path)))
    m = re.search(r"Overall exposure level for .*: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) < 3.0
    assert "Unknown key" not in proc.stderr


def test_unit_has_what_the_daemon_relies_on():
    text = UNIT.read_text()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "KillMode=mixed", "Restart=on-failure",
                 "RestartPreventExitStatus=78", "StateDirectory=video-supervisor", "LogsDirectory=video-supervisor",
                 "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes",
                 "User=video-supervisor"):
        assert line in text.splitlines(), line
    watchdog = int(re.search(r"^WatchdogSec=(\d+)s$", text, re.M).group(1))
    stop = int(re.search(r"^TimeoutStopSec=(\d+)s$", text, re.M).group(1))
    assert stop > 30 + 10  # longer than drain_seconds plus the stop grace period
    assert watchdog >= 10


# --- a real systemd ---------------------------------------------------------------------------


class Container:
    def __init__(self, proc: subprocess.Popen[bytes], pid: int, log: Path) -> None:
        self.proc, self.pid, self.log = proc, pid, log

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(["nsenter", "-t", str(self.pid), "-a", *cmd], capture_output=True, text=True,
                             timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"{cmd}: exit {out.returncode}: {out.stdout}{out.stderr}")
        return out

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _descendant_named(root: int, name: str) -> int | None:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                with open(f"/proc/{entry}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(") ", 1)[1].split()[1])
            if comm == name:
                p = int(entry)
                while p in parents or p > 1:
                    if parents.get(p) == root:
                        return int(entry)
                    if p not in parents:
                        try:
                            with open(f"/proc/{p}/stat") as f:
                                parents[p] = int(f.read().rsplit(") ", 1)[1].split()[1])
                        except OSError:
                            break
                    p = parents[p]
                    if p <= 1:
                        break
    return None


@pytest.fixture(scope="module")
def container(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("booting a systemd container needs root")
    if shutil.which("systemd-nspawn") is None or shutil.which("nsenter") is None:
        pytest.fail("systemd-nspawn is missing: `make test` installs it (Debian package systemd-container)")
    work = tmp_path_factory.mktemp("nspawn")
    log = work / "container.log"
    # The work folder appears at /srv/vs-test inside: under /tmp, PrivateTmp= would hide it. Its
    # cameras and results folders appear where the shipped settings expect them.
    for folder in ("cameras", "results"):
        (work / folder).mkdir()
        os.chmod(work / folder, 0o755)
    binds = {f"{REPO}:{GUEST_REPO}", f"{sys.base_prefix}:{GUEST_PYTHON}", f"{work}:{GUEST}",
             f"{work / 'cameras'}:/srv/cameras", f"{work / 'results'}:/srv/video-supervisor/results"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["systemd-nspawn", "-D", "/", "--volatile=yes", "-b", "--console=pipe", "--register=no",
             "--keep-unit", "-M", f"vs{os.getpid()}", *[f"--bind={b}" for b in sorted(binds)]],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        pid = None
        while time.monotonic() < deadline and pid is None:
            if proc.poll() is not None:
                pytest.fail(f"systemd-nspawn exited {proc.returncode}: {log.read_text()[-2000:]}")
            pid = _descendant_named(proc.pid, "systemd")
            time.sleep(0.1)
        assert pid is not None, "no systemd inside the container"
        c = Container(proc, pid, log)
        while time.monotonic() < deadline:
            state = c.run("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
        c.work = work  # type: ignore[attr-defined]
        yield c
    finally:
        proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_shipped_unit_and_settings_under_a_real_systemd_as_the_service_user(container):
    """The unit file and the service settings as shipped; only where this checkout's program lives is
    substituted. The service user comes from the shipped sysusers file; the stand-in worker replaces
    the detector in the settings."""
    c = container
    work: Path = c.work
    # The service user, as the shipped sysusers.d file makes it.
    c.run("mkdir", "-p", "/etc/sysusers.d")
    c.run("cp", str(GUEST_REPO / "systemd" / "video-supervisor.sysusers.conf"),
          "/etc/sysusers.d/video-supervisor.conf")
    c.run("systemd-sysusers")
    uid = int(c.run("id", "-u", "video-supervisor").stdout)
    gid = int(c.run("id", "-g", "video-supervisor").stdout)
    assert uid != 0 and gid != 0
    os.chown(work / "results", uid, gid)  # the results folder the site makes for it (ReadWritePaths=)
    # The shipped settings, with the stand-in worker as the detector.
    record = "/srv/video-supervisor/results/runs.jsonl"
    worker = ["{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}", "--out", "{out}",
              "--seconds", "0.1", "--record", record]
    shipped = (REPO / "systemd" / "video-supervisor.toml").read_text()
    assert "\n[worker]\n" in shipped
    with_worker = shipped.replace("\n[worker]\n", f"\n[worker]\ncommand = {json.dumps(worker)}\n")
    (work / "settings.toml").write_text(with_worker)
    c.run("mkdir", "-p", "/etc/video-supervisor")
    c.run("cp", str(GUEST / "settings.toml"), "/etc/video-supervisor/video-supervisor.toml")
    c.run("cp", str(GUEST_REPO / "etc" / "rois.toml"), "/etc/video-supervisor/rois.toml")
    # The shipped unit; the program is this checkout's, run by this machine's Python (bound outside /root,
    # which ProtectHome= hides).
    text = UNIT.read_text()
    site = GUEST_REPO / Path(sys.executable).parent.parent.relative_to(REPO) / "lib" / \
        f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    program = f"{GUEST_PYTHON}/bin/python{sys.version_info.major}.{sys.version_info.minor} -m supervisor"
    assert "ExecStart=/opt/video-supervisor/bin/video-supervisor " in text
    text = text.replace("ExecStart=/opt/video-supervisor/bin/video-supervisor ", f"ExecStart={program} ")
    text = text.replace("Environment=PYTHONUNBUFFERED=1", "Environment=PYTHONUNBUFFERED=1 "
                        f"PYTHONPATH={GUEST_REPO}:{site} LD_LIBRARY_PATH={GUEST_PYTHON}/lib")
    (work / "video-supervisor.service").write_text(text)
    c.run("cp", str(GUEST / "video-supervisor.service"), "/etc/systemd/system/video-supervisor.service")
    c.run("systemctl", "daemon-reload")
    unit = "video-supervisor.service"
    videos = work / "cameras"
    make_video(videos / "camera_35" / "camera_35_20251114_100000.mp4")
    runs = work / "results" / "runs.jsonl"

    # start returns once READY=1 arrived (Type=notify); the first scan is already queued by then.
    started = c.run("systemctl", "start", unit, check=False)
    if started.returncode != 0:
        journal = c.run("journalctl", "-u", unit, "--no-pager", "-n", "40", check=False).stdout
        raise AssertionError(f"systemctl start failed: {started.stderr}\n{journal}")
    props = c.show(unit, "ActiveState", "SubState", "StatusText", "MainPID")
    assert props["ActiveState"] == "active" and props["SubState"] == "running", props
    assert re.search(r"\d+ running, \d+ queued, \d+ dead", props["StatusText"]), props
    first_pid = int(props["MainPID"])
    assert c.run("ps", "-o", "user=", "-p", str(first_pid)).stdout.strip() == "video-supervisor"
    try:
        _wait(lambda: len(read_runs(runs)) == 1, "the first video to be processed")
    except AssertionError:
        journal = c.run("journalctl", "-u", unit, "--no-pager", "-n", "30", "-o", "cat", check=False).stdout
        raise AssertionError(f"no video processed:\n{journal}") from None
    result = work / "results" / "camera_35" / "camera_35_20251114_100000.mp4" / "summary.json"
    _wait(result.is_file, "its results")
    assert (result.stat().st_uid, oct(result.stat().st_mode & 0o777)) == (uid, "0o640")
    assert oct(result.parent.stat().st_mode & 0o777) == "0o750"
    store = c.run("stat", "-c", "%U %a", "/var/lib/video-supervisor/jobs.sqlite3").stdout.split()
    assert store == ["video-supervisor", "640"]
    logs = c.run("sh", "-c", "ls /var/log/video-supervisor").stdout.split()
    assert any(name.startswith("processing_") for name in logs)

    # reload = rescan at once.
    make_video(videos / "camera_35" / "camera_35_20251114_110000.mp4")
    c.run("systemctl", "reload", unit)
    _wait(lambda: len(read_runs(runs)) == 2, "the new video after systemctl reload")
    assert int(c.show(unit, "MainPID")["MainPID"]) == first_pid

    # A stalled event loop stops the watchdog pings: systemd kills and restarts the daemon. A drop-in
    # shortens the watchdog for the test, as a site would tune it.
    c.run("mkdir", "-p", "/etc/systemd/system/video-supervisor.service.d")
    c.run("sh", "-c", "printf '[Service]\\nWatchdogSec=3s\\nRestartSec=1s\\n' "
                      "> /etc/systemd/system/video-supervisor.service.d/test.conf")
    c.run("systemctl", "daemon-reload")
    c.run("systemctl", "restart", unit)
    pid = int(c.show(unit, "MainPID")["MainPID"])
    c.run("kill", "-STOP", str(pid))  # a PID of the container's namespace
    try:
        _wait(lambda: c.show(unit, "NRestarts")["NRestarts"] == "1", "the watchdog restart", timeout=40)
    except AssertionError:
        journal = c.run("journalctl", "-u", unit, "--no-pager", "-n", "30", check=False).stdout
        raise AssertionError(f"no watchdog restart: {c.show(unit, 'NRestarts', 'ActiveState', 'SubState')}\n"
                             f"{journal}") from None
    _wait(lambda: c.show(unit, "ActiveState")["ActiveState"] == "active", "the restarted daemon", timeout=30)
    assert int(c.show(unit, "MainPID")["MainPID"]) != pid

    # stop drains and exits cleanly.
    c.run("systemctl", "stop", unit)
    after = c.show(unit, "ActiveState", "Result", "ExecMainStatus")
    assert after == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, after
    journal = c.run("journalctl", "-u", unit, "-o", "cat", "--no-pager", check=False).stdout
    assert '"event": "shutdown_complete"' in journal
    errors = c.run("journalctl", "-u", unit, "-p", "err", "-o", "cat", "--no-pager", check=False).stdout
    assert '"event": "job_started"' not in errors  # priorities reach the journal
    assert len(read_runs(runs)) == 2  # each video once, across the restart


def _wait(cond, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
