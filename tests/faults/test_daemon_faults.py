"""The daemon on real broken disks and a real drip-feeding webhook: it recovers by itself or stops
with a reason, never alive with work stuck."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.config import AlertSettings
from supervisor.jobs.model import JobState
from supervisor.observe.alerts import Alerts, post_json
from tests.daemon_harness import Daemon, daemon_settings
from tests.fakes import cli, cli_env, make_video, read_runs
from tests.test_daemon import stored

pytestmark = pytest.mark.faults


def _mount_tmpfs(target: Path, size: str) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")


def _fill(folder: Path) -> Path:
    """Fill the disk under `folder` to the last byte."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def _small_disk(target: Path, size: str) -> Iterator[Path]:
    _mount_tmpfs(target, size)
    yield target
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture
def state_disk(tmp_path: Path) -> Iterator[Path]:
    yield from _small_disk(tmp_path / "state", "2m")


@pytest.fixture
def log_disk(tmp_path: Path) -> Iterator[Path]:
    yield from _small_disk(tmp_path / "logs", "64k")


def test_a_full_state_disk_pauses_the_daemon_and_work_resumes_when_space_returns(tmp_path, state_disk):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    settings = daemon_settings(tmp_path, rescan=0.3, job_seconds=1.5)
    d = Daemon(settings)
    try:
        d.wait_for("job_started")
        filler = _fill(state_disk)  # while the first job runs: its outcome cannot be written
        for i in range(1, 6):  # nor can the videos that arrive meanwhile
            make_video(tmp_path / "videos" / "cam" / f"cam_20251114_1{i}0000.mp4")
        refused = d.wait_for("scan_not_recorded", timeout=30)
        assert "full" in refused["error"]
        waiting = d.wait_for("store_unavailable", timeout=30)
        assert waiting["operation"] == "mark_done" and "full" in waiting["error"]
        d.wait_for("store_still_unavailable", timeout=60)  # asked again, and refused again
        assert d.proc.poll() is None  # alive, owning its job, and saying why it waits
        assert not any(e.get("event") == "job_succeeded" for e in d.events)
        filler.unlink()  # the operator frees space
        d.wait_for("store_recovered", timeout=90)
        d.wait_for("job_succeeded", n=6, timeout=60)
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        d.stop()
    jobs = stored(tmp_path)
    assert len(jobs) == 6 and {j.state for j in jobs.values()} == {JobState.DONE}
    assert sorted(Path(r["video"]).name for r in read_runs(tmp_path / "runs.jsonl") if r["exit"] == 0) == \
        sorted(jobs)  # each exactly once


def test_a_full_log_disk_never_stops_a_job_and_says_so_once(tmp_path, log_disk):
    for i in range(4):
        make_video(tmp_path / "videos" / "cam" / f"cam_20251114_1{i}0000.mp4")
    _fill(log_disk)
    settings = daemon_settings(tmp_path)
    proc = subprocess.run(cli("--settings", str(settings)), capture_output=True, text=True, env=cli_env(),
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("cannot write the log files") == 1
    assert f"{log_disk}" in proc.stderr and "No space left on device" in proc.stderr
    assert len([r for r in read_runs(tmp_path / "runs.jsonl") if r["exit"] == 0]) == 4
    assert '"event": "run_summary"' in proc.stdout  # the console still has the whole story


ANSWER = b"HTTP/1.1 204 No Content\r\n\r\n"


class DripServer:
    """Accepts connections, then answers each one byte every `interval` seconds: an endpoint that never
    stalls long enough for a per-read timeout, yet never finishes in time."""

    def __init__(self, interval: float) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.interval = interval
        self.requests: list[bytes] = []
        self.answered = 0  # connections given the whole answer
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1.0)
            try:
                self.requests.append(conn.recv(65536))
                for byte in ANSWER:
                    if self._stop.wait(self.interval):
                        return
                    conn.sendall(bytes([byte]))
                self.answered += 1
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def test_a_drip_feeding_webhook_is_cut_off_at_its_deadline_and_never_holds_up_a_stop():
    # A byte every 0.2 s passes any per-read timeout of 1 s; the whole answer would take 5.4 s.
    server = DripServer(interval=0.2)
    url = f"http://alerts:s3cret@127.0.0.1:{server.port}/hook"

    async def main():
        with pytest.raises(Exception, match="timed out"):
            await post_json(url, {"kind": "x"}, timeout=1.0)
        cut_off = server.answered == 0  # the deadline ended it, not the answer
        alerts = Alerts(AlertSettings(webhooks=(url,), timeout_seconds=1.0, max_retries=5,
                                      retry_backoff_seconds=0.01, min_interval_seconds=0))
        await alerts.start(None)  # type: ignore[arg-type]
        for kind in ("a", "b", "c"):
            alerts.alert(kind)
        await alerts.stop()
        return cut_off, len(server.requests), server.answered, alerts

    try:
        cut_off, tries, answered, alerts = asyncio.run(main())
    finally:
        server.close()
    assert cut_off
    # The stop waits one deadline, not the queue's worth of tries (3 alerts x 6), and no answer came.
    assert 1 <= tries < 6 and answered == 0 and alerts.sent == 0
    # user:password@ became a Basic Authorization header, and left the request line and Host alone.
    line, *fields = server.requests[0].decode("latin-1").split("\r\n\r\n")[0].split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (f.split(":", 1) for f in fields)}
    assert line == "POST /hook HTTP/1.1" and headers["host"] == f"127.0.0.1:{server.port}"
    assert headers["authorization"] == "Basic YWxlcnRzOnMzY3JldA=="


def test_a_webhook_whose_answer_body_never_ends_is_delivered_once_on_its_status():
    """The status line and headers are the answer; a body that never comes must not turn a delivered
    alert into a failed one, sent again."""
    sock = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    requests: list[bytes] = []

    def answer(conn: socket.socket) -> None:
        with conn:
            requests.append(conn.recv(65536))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nonly the start")
            done.wait(60)

    def serve() -> None:
        with contextlib.suppress(OSError):  # closed at the end
            while not done.is_set():
                threading.Thread(target=answer, args=(sock.accept()[0],), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"

    async def main():
        status = await post_json(url, {"kind": "x"}, timeout=30)
        alerts = Alerts(AlertSettings(webhooks=(url,), timeout_seconds=30, max_retries=3, min_interval_seconds=0))
        await alerts.start(None)  # type: ignore[arg-type]
        alerts.alert("a")
        await alerts.stop()
        return status, alerts

    try:
        status, alerts = asyncio.run(main())
    finally:
        done.set()
        sock.close()
    assert status == 200
    assert alerts.sent == 1 and alerts.failed == 0 and len(requests) == 2


def test_results_are_private_to_the_service_group(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    settings = daemon_settings(tmp_path)
    proc = subprocess.run(["sh", "-c", 'umask 022 && exec "$@"', "sh", *cli("--settings", str(settings))],
                          capture_output=True, text=True, env=cli_env(), timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "results" / "cam" / "cam_20251114_100000.mp4"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    assert stat.S_IMODE((folder / "summary.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "results" / "cam").stat().st_mode) == 0o750


def test_a_symlink_planted_in_the_result_path_after_a_job_started_is_refused(tmp_path):
    from workers.outputs import AtomicOutputs, UnsafeOutput

    out = tmp_path / "results" / "cam" / "v.mp4"
    outputs = AtomicOutputs(out)
    f = outputs.open("summary.json")
    f.write("{}")
    # Someone swaps the folder for a symlink to elsewhere while the worker writes.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.rename(out, tmp_path / "moved")
    os.symlink(elsewhere, out)
    outputs.commit()
    assert list(elsewhere.iterdir()) == []  # the files went where the folder really was
    assert json.loads((tmp_path / "moved" / "summary.json").read_text()) == {}
    with pytest.raises(UnsafeOutput, match="is a symlink"):
        AtomicOutputs(out)  # the next attempt refuses the path outright
