"""The real unit file: systemd-analyze checks, then a real systemd (in a throw-away container)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from tests.fakes import REPO, make_video

UNIT = REPO / "systemd" / "video-supervisor.service"
GUEST = Path("/srv/vs-test")
GUEST_PYTHON = Path("/opt/vs-python")  # this machine's Python may live under /root, which ProtectHome= hides
GUEST_DEPS = Path("/opt/vs-deps")  # the test environment's packages: the wheel's dependencies

# End to end, with real processes (a real detector, a wheel build, a booted systemd): minutes on a busy
# 2-core machine, not the two a unit test gets.
pytestmark = pytest.mark.timeout(900)


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
    binds = {f"{sys.base_prefix}:{GUEST_PYTHON}", f"{work}:{GUEST}",
             f"{sysconfig.get_paths()['purelib']}:{GUEST_DEPS}",
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


def readme_block(heading: str, first_word: str) -> list[str]:
    """The command lines of the first ```sh block under a README heading that start with `first_word`."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    return [line for line in block.splitlines() if line.split(" ", 1)[0] == first_word]


def _as_run_here(line: str, wheel: Path) -> str:
    """A README line as this container runs it: as root already; this machine's Python where the service can
    reach it (the README's python3.11); the wheel's name as built; dependencies from the test's environment
    (tests download nothing), so pip installs the wheel alone."""
    line = line.split("   #", 1)[0].strip()
    assert line.startswith("sudo "), line
    line = line[len("sudo "):]
    line = line.replace("python3.11 -m venv", f"{GUEST_PYTHON}/bin/python{sys.version_info.major}."
                                               f"{sys.version_info.minor} -m venv")
    if "/bin/pip install " in line:
        line = re.sub(r"dist/video_supervisor-\S+\.whl", f"dist/{wheel.name}", line) + " --no-deps"
    return line


def test_the_readme_service_steps_from_a_wheel_under_a_real_systemd(container, built_wheel):
    """The README's "Run it as a service" block, run as written (see _as_run_here), from the wheel built in this
    test: the service then counts people in a recording as its own user, reloads, survives a hung loop through
    its watchdog, and drains on stop; the README's journal recipes read its journal."""
    c = container
    work: Path = c.work
    (work / "dist").mkdir()
    shutil.copy2(built_wheel, work / "dist" / built_wheel.name)
    (work / "models").mkdir()
    for name in ("person.pt", "person.pt.json"):  # the weights and their sidecar, as a site copies them
        shutil.copy2(REPO / "models" / name, work / "models" / name)
    # This machine's Python, bound where the service can reach it, finds its shared library there.
    c.run("sh", "-c", f"echo {GUEST_PYTHON}/lib >> /etc/ld.so.conf && ldconfig")
    steps = readme_block("## Run it as a service", "sudo")
    assert [s.split()[1] for s in steps[:3]] == ["python3.11", "/opt/video-supervisor/bin/pip",
                                                 "/opt/video-supervisor/bin/video-supervisor"], steps
    unit = "video-supervisor.service"
    for step in steps:
        line = _as_run_here(step, built_wheel)
        if "/bin/pip install " in line:
            site = c.run("/opt/video-supervisor/bin/python", "-c",
                         "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
            c.run("sh", "-c", f"echo {GUEST_DEPS} > {site}/zz_test_dependencies.pth")
        done = c.run("sh", "-c", f"cd {GUEST} && {line}", check=False, timeout=300)
        if done.returncode != 0:
            journal = c.run("journalctl", "-u", unit, "--no-pager", "-n", "40", check=False).stdout
            raise AssertionError(f"README step failed: {line}: exit {done.returncode}\n{done.stdout}{done.stderr}\n"
                                 f"{journal}")
        if "setup-service" in line:
            assert "checked /opt/video-supervisor/models/person.pt: counts person" in done.stdout, done.stdout
    uid = int(c.run("id", "-u", "video-supervisor").stdout)
    assert uid != 0
    props = c.show(unit, "ActiveState", "SubState", "StatusText", "MainPID", "ExecStart")
    assert props["ActiveState"] == "active" and props["SubState"] == "running", props
    assert "path=/opt/video-supervisor/bin/video-supervisor" in props["ExecStart"], props
    assert re.search(r"\d+ running, \d+ queued, \d+ dead", props["StatusText"]), props
    first_pid = int(props["MainPID"])
    assert c.run("ps", "-o", "user=", "-p", str(first_pid)).stdout.strip() == "video-supervisor"
    results = work / "results"
    assert results.stat().st_uid == uid  # made by setup-service through tmpfiles, owned by the service user

    # A recording with people in it, counted by the real detector on the CPU export setup-service made; and a
    # file that is no recording, which fails.
    sample = work / "sample"
    subprocess.run([sys.executable, "-m", "workers.demo_tree", str(sample)], check=True, capture_output=True,
                   timeout=300)
    recording = sorted((sample / "videos" / "camera_35").iterdir())[0]
    (work / "cameras" / "camera_35").mkdir()
    shutil.copy2(recording, work / "cameras" / "camera_35" / recording.name)
    make_video(work / "cameras" / "camera_35" / "camera_35_20251114_230000.mp4")  # random bytes
    c.run("systemctl", "reload", unit)
    summary = results / "camera_35" / recording.name / "summary.json"
    try:
        _wait(summary.is_file, "the recording's results", timeout=180)
    except AssertionError:
        journal = c.run("journalctl", "-u", unit, "--no-pager", "-n", "40", "-o", "cat", check=False).stdout
        raise AssertionError(f"no result:\n{journal}") from None
    counted = json.loads(summary.read_text())
    assert counted["engine"]["name"] == "openvino", counted["engine"]
    assert sum(r["person_seconds"] for r in counted["regions"].values()) > 0, counted["regions"]
    assert (summary.stat().st_uid, oct(summary.stat().st_mode & 0o777)) == (uid, "0o640")
    store = c.run("stat", "-c", "%U %a", "/var/lib/video-supervisor/jobs.sqlite3").stdout.split()
    assert store == ["video-supervisor", "640"]
    _wait(lambda: '"event": "job_dead"' in c.run("journalctl", "-u", unit, "-o", "cat", "--no-pager").stdout,
          "the damaged file's failure", timeout=120)

    # A settings change by reload: the parallelism follows it, and the journal says so.
    c.run("sed", "-i", "s/^max_parallel = 4$/max_parallel = 2/", "/etc/video-supervisor/video-supervisor.toml")
    c.run("systemctl", "reload", unit)
    _wait(lambda: "parallelism_changed" in c.run("journalctl", "-u", unit, "-o", "cat", "--no-pager").stdout,
          "the new parallelism")
    assert int(c.show(unit, "MainPID")["MainPID"]) == first_pid

    # The README's journal recipes, as written, on this journal (systemd's own text lines included).
    recipes = readme_block("### Reading the journal", "journalctl")
    assert len(recipes) == 3
    out = [c.run("bash", "-c", f"set -o pipefail; {r.split('   #', 1)[0]}").stdout.splitlines() for r in recipes]
    failed = [line.split("\t") for line in out[0]]
    assert any(f[1] == "camera_35" and f[2].endswith("camera_35_20251114_230000.mp4") and f[3] for f in failed), out[0]
    about = [json.loads(line) for line in out[1]]
    assert about and all(e["camera"] == "camera_35" for e in about)
    assert {"job_started", "job_succeeded"} <= {e["event"] for e in about}
    assert any(" parallelism " in line and " -> 2 " in line for line in out[2]), out[2]

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

    # stop drains and exits cleanly; each recording was processed once, across the restarts.
    c.run("systemctl", "stop", unit)
    after = c.show(unit, "ActiveState", "Result", "ExecMainStatus")
    assert after == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, after
    journal = c.run("journalctl", "-u", unit, "-o", "cat", "--no-pager", check=False).stdout
    assert '"event": "shutdown_complete"' in journal
    errors = c.run("journalctl", "-u", unit, "-p", "err", "-o", "cat", "--no-pager", check=False).stdout
    assert '"event": "job_started"' not in errors  # priorities reach the journal
    assert journal.count('"event": "job_succeeded"') == 1


def _wait(cond, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
