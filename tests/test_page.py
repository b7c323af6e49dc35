"""The daemon's own page and JSON on the metrics listener: what they show, in a real browser, and that a
slow client delays nobody."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

from supervisor.jobs.people import PeopleQuery
from supervisor.jobs.sqlite_store import JobStore
from tests import browser
from tests.daemon_harness import Daemon, daemon_settings
from tests.fakes import make_video


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_the_daemons_page_shows_its_queue_and_people_and_a_stalled_client_delays_nobody(tmp_path: Path) -> None:
    for i in range(3):
        make_video(tmp_path / "videos" / f"cam{i % 2}" / f"cam{i % 2}_20251114_10{i:02d}00.mp4")
    settings = daemon_settings(tmp_path, extra='[metrics]\nlisten = "127.0.0.1:0"\n')
    d = Daemon(settings)
    stalled = None
    try:
        port = int(d.wait_for("metrics_listening")["listen"].rsplit(":", 1)[1])
        d.wait_for("job_succeeded", n=3, timeout=60)
        # A client that opens a connection and never finishes its request holds one thread, nothing more.
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + 60
        while True:  # the status file catches up within a tick or two; the answer is cached a few seconds
            code, kind, body = get(port, "/api/status")
            assert code == 200 and kind == "application/json"
            status: dict[str, Any] = json.loads(body)
            if status["daemon"]["running"] and status["jobs"].get("done") == 3 and status["running"] == []:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
        assert "webhook" not in body and "postgresql://" not in body  # nothing secret
        code, _, body = get(port, "/api/people")
        people = json.loads(body)
        assert code == 200 and people["total"]["videos"] == 3
        code, kind, metrics = get(port, "/metrics")
        assert code == 200 and kind.startswith("text/plain") and "video_supervisor_person_seconds_total" in metrics
        assert get(port, "/nothing")[0] == 404
        page = browser.open_page(f"http://127.0.0.1:{port}/", tmp_path / "page.png")
        assert page.errors == [] and browser.chart_pixels(page.screenshot) > 500
        assert "3 done" in page.dom and "refresh" in page.dom
        found = browser.tables(page.dom)
        store = JobStore.open(tmp_path / "state" / "jobs.sqlite3", readonly=True)
        try:
            totals = {(r["camera"], r["region"]): r["person_seconds"] for r in store.people(PeopleQuery(), "total")}
        finally:
            store.close()
        shown = {(r[0], r[1]): float(r[2]) * 3600 for r in found[("", "", "people")]}
        assert shown.keys() == totals.keys() and all(abs(shown[k] - totals[k]) < 5 for k in totals)
        assert found.get(("", "", "queue"), []) == []  # nothing waits
        # The scheduler went on beating while the stalled client held its connection.
        before = _metric(get(port, "/metrics")[2], "video_supervisor_heartbeat_timestamp_seconds")
        deadline = time.monotonic() + 30
        while _metric(get(port, "/metrics")[2], "video_supervisor_heartbeat_timestamp_seconds") <= before:
            assert time.monotonic() < deadline, "the scheduler stopped beating"
            time.sleep(0.2)
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        if stalled is not None:
            stalled.close()
        d.stop()


def _metric(text: str, name: str) -> float:
    [line] = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[1])


def test_the_page_charts_each_gpus_last_hours_and_escapes_what_it_shows() -> None:
    from supervisor.gpu.probe import GpuReading
    from supervisor.gpu.trends import GpuTrends
    from supervisor.observe.estimate import format_duration
    from supervisor.observe.web import GpuTrend, render_page

    trends = GpuTrends()
    for i in range(5):  # every 30 s over two minutes: a point a minute, the hottest reading of each
        trends.add(0, GpuReading(0, temperature=60 + i, utilization=50, memory_used_mb=1000), 4,
                   at=1_000_020.0 + 30 * i)
    trend = GpuTrend()
    trend.set({0: trends.series(0)})
    assert [p["temperature"] for p in trend.points()] == [61, 63, 64]
    status = {"daemon": {"running": True, "mode": "daemon", "pid": 1}, "jobs": {"queued": 2}, "running": [],
              "queued_by_camera": {"<cam>": 2}, "speed": {}, "eta_seconds": 90.0, "store_trouble": None,
              "eta_seconds_by_camera": {"<cam>": 7200.0},
              "gpus": [{"gpu": 0, "health": "healthy", "limit": 4, "temperature": 63, "utilization": 50,
                        "memory_used_mb": 1000, "memory_total_mb": 8000}],
              "recent_failures": [], "damaged": {"videos": 0, "seconds": 0.0}, "gpu_trend": trend.points(),
              "io": {"share": {"state": "slow", "detail": "a 64 KiB read took 800 ms", "jobs": 2,
                               "throughput_mb_s": 18, "read_wait_share": 0.62,
                               "pacing": "videos share: 18 MB/s, workers waiting 62 % on reads"},
                     "store_round_trip_ms": 2.5}}
    html = render_page(status, {"people": []})
    assert ("<p>videos share: slow (a 64 KiB read took 800 ms); 2 worker(s) read 18 MB/s in all, waiting 62 % on "
            "reads</p>") in html
    assert "<p>limit not raised: videos share: 18 MB/s, workers waiting 62 % on reads</p>" in html
    assert "<p>job store: 2.5 ms a query</p>" in html
    data = json.loads(html.split('id="chart-data">', 1)[1].split("</script>", 1)[0])
    assert {k: v["values"] for k, v in data.items()} == {
        "gpu0temperature": [61, 63, 64], "gpu0limit": [4, 4, 4], "gpu0utilization": [50, 50, 50],
        "gpu0memory_used_mb": [1000, 1000, 1000]}
    assert "&lt;cam&gt;" in html and "<cam>" not in html
    assert f"ETA {format_duration(90.0)}" in html and f"<td>{format_duration(7200.0)}</td>" in html


def test_more_clients_at_once_than_the_page_serves_are_told_busy_and_the_rest_are_answered() -> None:
    import threading

    from prometheus_client import CollectorRegistry

    from supervisor.observe import web

    release = threading.Event()

    class SlowPages(web.Pages):
        def status(self) -> dict[str, Any]:
            release.wait(30)  # a store that takes its time
            return {"ok": True}

    pages = SlowPages(web.Sources(Path("/nonexistent"), "", Path("/nonexistent.db")), CollectorRegistry(),
                      web.GpuTrend())
    server = web.serve("127.0.0.1", 0, pages)
    port = server.server_address[1]
    answers: list[int] = []
    waiting = [threading.Thread(target=lambda: answers.append(get(port, "/api/status")[0]))
               for _ in range(web.MAX_CLIENTS)]
    try:
        for t in waiting:
            t.start()
        deadline = time.monotonic() + 30  # a cap for a broken build: the slots fill as the requests arrive
        while server.slots._value > 0:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the slow requests never arrived"
            time.sleep(0.02)
        assert get(port, "/api/status")[0] == 503  # one more than it serves at once
        assert get(port, "/metrics")[0] == 503
    finally:
        release.set()
        for t in waiting:
            t.join(30)
        server.shutdown()
        server.server_close()
    assert answers == [200] * web.MAX_CLIENTS
    assert get_after_close_is_refused(port)


def get_after_close_is_refused(port: int) -> bool:
    try:
        get(port, "/metrics")
    except OSError:
        return True
    return False
