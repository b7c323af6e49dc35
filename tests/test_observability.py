"""status, report, Prometheus metrics, webhook alerts and the progress display, checked for real content."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from supervisor.config import AlertSettings, GpuSettings, SchedulerSettings, WorkerSettings
from supervisor.jobs.sqlite_store import JobStore
from supervisor.observe.alerts import Alerts, endpoint_of
from supervisor.observe.metrics import Metrics
from tests.daemon_harness import Daemon, daemon_settings, set_worker_command
from tests.fakes import cli, cli_env, engine, fake_worker_command, make_settings, make_video, until
from tests.test_scheduling import run_sup


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, env=cli_env(), timeout=60)


def test_status_while_the_daemon_runs_and_after(tmp_path):
    for cam in ("camera_35", "camera_22"):
        for h in range(5):
            make_video(tmp_path / "videos" / cam / f"{cam}_20251114_1{h}0000.mp4", size=4096 * (h + 1))
    script = tmp_path / "gpu.jsonl"
    script.write_text(json.dumps({"t": 0, "gpu": 0, "temperature": 74, "utilization": 97,
                                  "memory_used_mb": 9000, "memory_total_mb": 12288}) + "\n")
    gate = tmp_path / "hold"
    settings = set_worker_command(daemon_settings(tmp_path, job_seconds=1.0), [
        "{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}", "--out", "{out}",
        "--seconds", "1.0", "--hold-while", str(gate)])
    text = settings.read_text().replace('probe = "none"', f'probe = "scripted:{script}"\npoll_seconds = 0.1')
    settings.write_text(text.replace("max_parallel = 2", "max_parallel = 4"))
    d = Daemon(settings)
    db = str(tmp_path / "state" / "jobs.sqlite3")
    try:
        d.wait_for("job_succeeded", n=2, timeout=60)  # a history to estimate from
        gate.touch()  # the jobs now running stay mid-way until the checks below are done
        deadline = time.monotonic() + 120  # a cap for a broken build, not a measure: the state holds
        while True:
            st = json.loads(run_cli("status", "--state-db", db, "--json").stdout)
            if st["daemon"]["running"] and any(r["percent"] is not None for r in st["running"]):
                break
            assert time.monotonic() < deadline, st
            time.sleep(0.2)
        assert st["daemon"]["pid"] == d.proc.pid and st["limit"] == 2  # 74 C: warm
        assert st["gpus"][0]["temperature"] == 74 and st["gpus"][0]["health"] == "warm"
        running = st["running"]
        assert 1 <= len(running) <= 2
        assert all(r["camera"] in ("camera_35", "camera_22") for r in running)
        assert all(0 <= r["percent"] <= 100 for r in running if r["percent"] is not None)
        assert sum(st["queued_by_camera"].values()) == st["jobs"]["queued"] + st["jobs"]["failed"]
        assert st["jobs"]["done"] >= 2 and st["eta_seconds"] is not None and st["eta_seconds"] > 0
        human = run_cli("status", "--state-db", db).stdout
        assert f"pid {d.proc.pid}" in human and "gpu 0: 74 C, 97% busy, 8.8/12.0 GB, warm, limit 2" in human
        assert "  bands: warm from 70 C, critical above 80 C (settings)" in human
        # A point a minute: one or two, as the run straddles a minute or not.
        assert re.search(r"\n  last [12] min: 74-74 C, 97% busy on average, limit as low as 2\n", human), human
        report = run_cli("report", "--state-db", db).stdout
        assert re.search(r"GPUs, the running daemon's last hour:\n  gpu 0: 74-74 C over [12] min, 97% busy", report)
        assert "queue ETA:" in human
        gate.unlink()
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        gate.unlink(missing_ok=True)
        d.stop()
    after = json.loads(run_cli("status", "--state-db", db, "--json").stdout)
    assert after["daemon"]["running"] is False and after["running"] == []
    assert after["jobs"]["done"] + after["jobs"]["queued"] == 10


def test_status_lists_recent_failures_with_their_reason(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    s = make_settings(tmp_path, worker=WorkerSettings(command=fake_worker_command("--exit", "65")))
    assert run_sup(s)[0] == 1
    st = json.loads(run_cli("status", "--state-db", str(s.state_db), "--json").stdout)
    [failure] = st["recent_failures"]
    assert failure["state"] == "dead" and failure["camera"] == "cam"
    assert failure["error"] == "exit 65: fake worker failing on purpose with exit 65"
    assert "supervisor: not running" in run_cli("status", "--state-db", str(s.state_db)).stdout


def test_report_per_camera_matches_the_jobs_that_ran(tmp_path):
    for cam, n in (("camera_35", 3), ("camera_22", 2)):
        for h in range(n):
            make_video(tmp_path / "videos" / cam / f"{cam}_20251114_1{h}0000.mp4")
    make_video(tmp_path / "videos" / "camera_22" / "camera_22_20251114_130000.mp4")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"camera_22_20251114_130000.mp4": {"exit": [65]},
                                "camera_35_20251114_100000.mp4": {"exit": [75, 0]}}))
    s = make_settings(tmp_path, worker=WorkerSettings(
        command=fake_worker_command("--duration", "120", seconds=0.1, plan=plan), retry_backoff_seconds=0.05))
    assert run_sup(s)[0] == 1
    report = json.loads(run_cli("report", "--state-db", str(s.state_db), "--json").stdout)
    rows = {r["camera"]: r for r in report["cameras"]}
    assert rows["camera_35"]["videos"] == 3 and rows["camera_35"]["failures"] == 0
    assert rows["camera_35"]["retries"] == 1
    assert rows["camera_22"]["videos"] == 2 and rows["camera_22"]["failures"] == 1
    assert rows["camera_35"]["video_hours"] == pytest.approx(3 * 120 / 3600, abs=1e-3)
    store = JobStore.open(s.state_db, readonly=True)
    durations = sorted(j.duration_seconds for j in store.jobs() if j.camera == "camera_35")
    store.close()
    assert rows["camera_35"]["mean_job_seconds"] == pytest.approx(sum(durations) / 3, abs=0.05)
    assert rows["camera_35"]["p95_job_seconds"] == pytest.approx(durations[-1], abs=0.05)
    assert report["total"]["videos"] == 5 and report["total"]["failures"] == 1
    assert rows["camera_35"]["speed"] == pytest.approx(360 / sum(durations), rel=0.02)
    csv_out = run_cli("report", "--state-db", str(s.state_db), "--csv").stdout.splitlines()
    assert csv_out[0].startswith("camera,videos,video_hours") and len(csv_out) == 4
    table = run_cli("report", "--state-db", str(s.state_db)).stdout
    assert "camera_35" in table and "total" in table
    future = run_cli("report", "--state-db", str(s.state_db), "--since", "2999-01-01", "--json").stdout
    assert json.loads(future)["total"]["videos"] == 0
    assert run_cli("report", "--state-db", str(s.state_db), "--since", "yesterday").returncode == 2


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_prometheus_metrics_are_served_and_valid(tmp_path):
    for i in range(4):
        make_video(tmp_path / "videos" / "cam" / f"cam_20251114_10{i:02d}00.mp4")
    script = tmp_path / "gpu.jsonl"
    script.write_text(json.dumps({"t": 0, "gpu": 0, "temperature": 66, "utilization": 50,
                                  "memory_used_mb": 1024, "memory_total_mb": 8192}) + "\n")
    s = make_settings(tmp_path, scheduler=SchedulerSettings(max_parallel=2),
                      gpu=GpuSettings(probe=f"scripted:{script}", poll_seconds=0.05, snapshot_seconds=60),
                      worker=WorkerSettings(command=fake_worker_command("--duration", "60", seconds=0.3)))
    metrics = Metrics("127.0.0.1:0")
    seen: dict[str, str] = {}

    async def during(sup):
        await until(lambda: metrics.port is not None)
        await until(lambda: sup.stats.completed >= 1)
        seen["live"] = await asyncio.to_thread(scrape, metrics.port)  # served over HTTP while jobs run

    async def main():
        from supervisor.scheduling.supervisor import Supervisor

        store = JobStore.open(s.state_db)
        sup = Supervisor(s, engine(store), observers=[metrics])
        side = asyncio.create_task(during(sup))
        await sup.run()
        await side
        await sup.tick_observers()  # one last look, once every job is recorded
        store.close()

    asyncio.run(main())
    assert "video_supervisor_running_jobs" in seen["live"]
    text = generate_latest(metrics.registry).decode()  # everything, once the run is over
    families = {f.name: f for f in text_string_to_metric_families(text)}
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert value[("video_supervisor_jobs", (("state", "done"),))] == 4
    assert value[("video_supervisor_job_duration_seconds_count", (("camera", "cam"),))] == 4
    assert value[("video_supervisor_video_processed_seconds_total", (("camera", "cam"),))] == 240
    assert value[("video_supervisor_job_attempts_total", (("camera", "cam"), ("outcome", "succeeded")))] == 4
    assert value[("video_supervisor_parallel_limit", (("gpu", "0"),))] == 2
    assert value[("video_supervisor_gpu_temperature_celsius", (("gpu", "0"),))] == 66
    assert value[("video_supervisor_gpu_utilization_ratio", (("gpu", "0"),))] == 0.5
    assert value[("video_supervisor_gpu_memory_total_bytes", (("gpu", "0"),))] == 8192 * 2**20
    assert value[("video_supervisor_gpu_health", (("gpu", "0"), ("state", "healthy")))] == 1
    assert value[("video_supervisor_rescans_total", ())] >= 1
    # People, from each recording's hours as the store keeps them.
    assert value[("video_supervisor_person_seconds_total", (("camera", "cam"), ("region", "frame")))] == 240
    assert value[("video_supervisor_occupied_seconds_total", (("camera", "cam"), ("region", "frame")))] == 240
    from supervisor import __version__
    assert value[("video_supervisor_build_info", (("version", __version__),))] == 1
    assert value[("video_supervisor_heartbeat_timestamp_seconds", ())] > 1.7e9
    assert value[("video_supervisor_store_paused", ())] == 0
    assert value[("video_supervisor_last_successful_scan_timestamp_seconds", ())] > 1.7e9
    for name in families:
        assert name.startswith("video_supervisor_") or not name.startswith("video")
    promtool = shutil.which("promtool")
    if promtool:
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_metrics_port_in_use_is_a_warning_not_a_crash(tmp_path):
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        with capture_logs() as logs:
            code, _ = _run_with(tmp_path, f"127.0.0.1:{port}")
        assert code == 0
        assert any(e["event"] == "metrics_unavailable" for e in logs)
    finally:
        blocker.close()


def _run_with(tmp_path: Path, listen: str):
    async def main():
        from supervisor.scheduling.supervisor import Supervisor

        s = make_settings(tmp_path)
        store = JobStore.open(s.state_db)
        sup = Supervisor(s, engine(store), observers=[Metrics(listen)])
        code = await sup.run()
        store.close()
        return code, sup

    return asyncio.run(main())


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    arrived: ClassVar[list[str]] = []
    hold: threading.Event | None = None  # when set up, each POST waits for it before it is answered

    def do_POST(self):
        type(self).arrived.append(self.path)
        if self.hold is not None:
            self.hold.wait(120)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"path": self.path, "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def serve(hold: threading.Event | None = None):
    handler = type("Hook", (_Hook,), {"received": [], "arrived": [], "hold": hold})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


def test_dead_jobs_alert_a_webhook_once_per_interval_and_never_log_its_secret(tmp_path):
    for i in range(3):
        make_video(tmp_path / "videos" / "cam" / f"cam_20251114_10{i:02d}00.mp4")
    server, hook = serve()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook/SECRET-TOKEN?key=SECRET-KEY"
    try:
        s = make_settings(tmp_path, worker=WorkerSettings(command=fake_worker_command("--exit", "65")))
        alerts = Alerts(AlertSettings(webhooks=(url,), min_interval_seconds=3600, timeout_seconds=2))
        with capture_logs() as logs:
            code, _ = _run_observed(s, alerts)
        assert code == 1
        assert len(hook.received) == 1  # three dead jobs, one alert in the interval
        body = hook.received[0]["body"]
        assert body["kind"] == "job_dead" and body["camera"] == "cam" and "exit 65" in body["error"]
        assert hook.received[0]["path"] == "/hook/SECRET-TOKEN?key=SECRET-KEY"
        assert alerts.sent == 1 and alerts._held["job_dead"] == 2
        assert not any("SECRET" in json.dumps(e, default=str) for e in logs)
        assert any(e["event"] == "alert_sent" and e["endpoint"] == f"http://127.0.0.1:{server.server_address[1]}/…"
                   for e in logs)
    finally:
        server.shutdown()
        server.server_close()


def test_the_next_alert_says_how_many_were_held_back():
    async def main():
        now = [0.0]
        server, hook = serve()
        url = f"http://127.0.0.1:{server.server_address[1]}/x"
        alerts = Alerts(AlertSettings(webhooks=(url,), min_interval_seconds=60), clock=lambda: now[0])
        await alerts.start(None)  # type: ignore[arg-type]
        assert alerts.alert("gpu_critical", gpu=0)
        assert not alerts.alert("gpu_critical", gpu=0)
        assert not alerts.alert("gpu_critical", gpu=0)
        assert alerts.alert("job_dead", camera="c")  # another kind has its own budget
        now[0] = 61.0
        assert alerts.alert("gpu_critical", gpu=0)
        await alerts.stop()
        server.shutdown()
        server.server_close()
        return hook.received

    received = asyncio.run(main())
    held = [r["body"]["held_back"] for r in received if r["body"]["kind"] == "gpu_critical"]
    assert held == [0, 2]


class _WatchedAlerts(Alerts):
    """Alerts that note what was delivered when the last job died, then let the endpoint answer."""

    def __init__(self, settings, hold, jobs):
        super().__init__(settings)
        self._hold, self._jobs, self._dead = hold, jobs, 0
        self.at_last_death: tuple[int, int] | None = None  # (sent, failed) then

    def job_finished(self, rj, outcome, state):
        super().job_finished(rj, outcome, state)
        self._dead += str(state) == "dead"
        if self._dead == self._jobs:
            self.at_last_death = (self.sent, self.failed)
            self._hold.set()


def test_a_hanging_webhook_never_slows_the_scheduler(tmp_path):
    for i in range(4):
        make_video(tmp_path / "videos" / "cam" / f"cam_20251114_10{i:02d}00.mp4")
    hold = threading.Event()  # the endpoint answers nothing until the last job has died
    server, hook = serve(hold)
    url = f"http://127.0.0.1:{server.server_address[1]}/slow"
    try:
        s = make_settings(tmp_path, worker=WorkerSettings(command=fake_worker_command("--exit", "65")))
        # Each POST may take 60 s: sent inline, the first alert would hold up the second job that long,
        # and by the last death it would have been delivered or given up on.
        alerts = _WatchedAlerts(AlertSettings(webhooks=(url,), min_interval_seconds=0, timeout_seconds=60,
                                              max_retries=0), hold, jobs=4)
        code, sup = _run_observed(s, alerts)
        assert code == 1 and sup.stats.dead == 4
        assert alerts.at_last_death == (0, 0)  # every job ran while the first alert still waited
        assert alerts.sent == len(hook.received) and alerts.sent >= 1  # then the endpoint answered
    finally:
        hold.set()
        server.shutdown()
        server.server_close()


def test_an_undeliverable_alert_is_retried_then_logged_without_its_url():
    hold = threading.Event()
    server, _ = serve(hold)
    url = f"http://127.0.0.1:{server.server_address[1]}/slow/SECRET"

    async def main():
        alerts = Alerts(AlertSettings(webhooks=(url,), timeout_seconds=0.2, max_retries=2,
                                      retry_backoff_seconds=0.05))
        await alerts.start(None)  # type: ignore[arg-type]
        alerts.alert("job_dead", camera="c")
        while not alerts.failed:  # three tries of 0.2 s; the test's own timeout is the cap
            await asyncio.sleep(0.05)
        await alerts.stop()
        return alerts

    try:
        with capture_logs() as logs:
            alerts = asyncio.run(main())
    finally:
        hold.set()
        server.shutdown()
        server.server_close()
    assert alerts.failed == 1 and alerts.sent == 0
    [failed] = [e for e in logs if e["event"] == "alert_failed"]
    assert failed["attempts"] == 3 and "SECRET" not in json.dumps(failed) and "timed out" in failed["error"]


def test_redaction_keeps_only_scheme_host_and_port():
    assert endpoint_of("https://user:pw@hooks.example.com:8443/services/T0/B0/XYZ?x=1") == "https://hooks.example.com:8443/…"


def _run_observed(s, observer):
    async def main():
        from supervisor.scheduling.supervisor import Supervisor

        store = JobStore.open(s.state_db)
        sup = Supervisor(s, engine(store), observers=[observer])
        code = await sup.run()
        store.close()
        return code, sup

    return asyncio.run(main())


def test_gpu_turning_critical_raises_one_alert(tmp_path):
    for i in range(3):
        make_video(tmp_path / "videos" / "cam" / f"cam_20251114_10{i:02d}00.mp4")
    script = tmp_path / "gpu.jsonl"
    script.write_text(json.dumps({"t": 0, "gpu": 0, "temperature": 60}) + "\n"
                      + json.dumps({"t": 0.2, "gpu": 0, "temperature": 91}) + "\n")
    server, hook = serve()
    try:
        s = make_settings(tmp_path, gpu=GpuSettings(probe=f"scripted:{script}", poll_seconds=0.05,
                                                    snapshot_seconds=60),
                          worker=WorkerSettings(command=fake_worker_command(seconds=0.4)))
        alerts = Alerts(AlertSettings(webhooks=(f"http://127.0.0.1:{server.server_address[1]}/",)))
        code, _ = _run_observed(s, alerts)
        assert code == 0
    finally:
        server.shutdown()
        server.server_close()
    [alert] = hook.received
    assert alert["body"]["kind"] == "gpu_critical" and alert["body"]["gpu"] == 0
    assert "91 C" in alert["body"]["reason"]


def test_progress_bar_on_a_terminal_and_plain_json_elsewhere(tmp_path):
    for i in range(3):
        make_video(tmp_path / "videos" / "cam" / f"cam_20251114_10{i:02d}00.mp4")
    settings = daemon_settings(tmp_path, job_seconds=0.5)
    settings.write_text(settings.read_text().replace("allow_root = true\n", ""))
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(cli("--settings", str(settings)), stdin=child_fd, stdout=child_fd, stderr=child_fd,
                            env=cli_env(TERM="xterm", COLUMNS="120"), close_fds=True)
    os.close(child_fd)
    out = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(main_fd)
    text = out.decode(errors="replace")
    assert proc.returncode == 0
    assert "\x1b[" in text and "videos" in text  # a live display was drawn
    # and the log lines are for a person: readable, not JSON
    assert "run_summary" in text and "completed=3" in text and '"event":' not in text
    # Reprocess through a pipe: no escape codes, every line one JSON object.
    piped = subprocess.run(cli("--settings", str(settings), "--reprocess"), capture_output=True, text=True,
                           env=cli_env(TERM="xterm"), timeout=60)
    assert piped.returncode == 0 and "\x1b" not in piped.stdout
    assert all(json.loads(line) for line in piped.stdout.splitlines())


def test_settings_reject_bad_metrics_and_alerts(tmp_path):
    from supervisor.config import ConfigError, load_settings

    p = tmp_path / "vs.toml"
    p.write_text('[metrics]\nlisten = "9808"\n')
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        load_settings(p)
    p.write_text('[alerts]\nwebhooks = ["ftp://x"]\n')
    with pytest.raises(ConfigError, match=r"alerts.webhooks\[0\]"):
        load_settings(p)
    assert replace(load_settings(None).metrics).listen == "127.0.0.1:9808"


def test_a_terminal_gets_readable_lines_with_the_level_in_colour_and_the_files_keep_json():
    from supervisor.logs import human_line

    line = json.dumps({"reason": "no exported model beside it", "engine": "torch", "count": 2,
                       "event": "engine_fallback", "level": "warning", "timestamp": "2025-11-14T14:30:05.123456Z"})
    assert human_line(line, colour=False) == (
        '14:30:05 warning engine_fallback  reason="no exported model beside it" engine=torch count=2')
    coloured = human_line(line, colour=True)
    assert "\x1b[33mwarning" in coloured and "\x1b[1mengine_fallback\x1b[0m" in coloured
    assert human_line("not json", colour=True) == "not json"
