"""The daemon's own page and its JSON, beside /metrics on the metrics listener. Read-only.

    /             the page: queue and progress per camera with ETAs, running jobs, GPU health and its
                  last hours, recent failures and damage, and people by region; it refreshes itself
    /api/status   what `video-supervisor status --json` prints
    /api/people   what `video-supervisor report --json` prints
    /metrics      Prometheus

It runs on threads of its own, never on the scheduler's loop: it reads the status
file the daemon keeps and the job store through the commands' own read-only
reader, as `status` and `report` do, so a slow or abusive client delays nobody
but itself. Each request's work is bounded: at most `MAX_CLIENTS` at once (more
get 503), a socket timeout for clients that stall, and answers cached for a few
seconds (status) or a minute (people), computed by one request at a time.
Nothing secret is on it: no settings, no webhook or store address.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from supervisor.jobs.contract import JobReader
from supervisor.observe.charts import canvas, page
from supervisor.observe.estimate import format_duration
from supervisor.observe.status import gpu_details, io_lines

MAX_CLIENTS = 8
CLIENT_TIMEOUT_SECONDS = 10.0
STATUS_TTL_SECONDS = 3.0
PEOPLE_TTL_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the page reads: the daemon's status file and its job store (a SQLite file or a URL)."""

    status_file: Path
    store_url: str
    state_db: Path


class GpuTrend:
    """The GPU monitor's last hours of each GPU (supervisor/gpu/trends.py), as the latest snapshot had them."""

    def __init__(self) -> None:
        self._series: Mapping[int, Sequence[Mapping[str, Any]]] = {}

    def set(self, series: Mapping[int, Sequence[Mapping[str, Any]]]) -> None:
        self._series = series

    def points(self) -> list[dict[str, Any]]:
        return [{"at": p["t"], "gpu": gpu, **{k: v for k, v in p.items() if k != "t"}}
                for gpu, points in self._series.items() for p in points]


class _Cached:
    """One value, computed by one caller at a time and kept `ttl` seconds."""

    def __init__(self, ttl: float, compute: Callable[[], Any]) -> None:
        self._ttl, self._compute = ttl, compute
        self._lock = threading.Lock()
        self._value: Any = None
        self._at = float("-inf")

    def get(self) -> Any:
        with self._lock:
            if time.monotonic() - self._at > self._ttl:
                self._value = self._compute()
                self._at = time.monotonic()
            return self._value


class Pages:
    """What the endpoint answers; every method runs on a request's thread."""

    def __init__(self, sources: Sources | None, registry: CollectorRegistry, trend: GpuTrend) -> None:
        self.sources = sources
        self.registry = registry
        self.trend = trend
        self._status = _Cached(STATUS_TTL_SECONDS, self._read_status)
        self._people = _Cached(PEOPLE_TTL_SECONDS, self._read_people)

    def _reader(self) -> JobReader:
        from supervisor.jobs.connect import open_reader

        assert self.sources is not None
        return open_reader(self.sources.store_url or self.sources.state_db)

    def _read_status(self) -> dict[str, Any]:
        from supervisor.observe.status import collect_status, read_snapshot

        assert self.sources is not None
        store = self._reader()
        try:
            return collect_status(store, read_snapshot(self.sources.status_file))
        finally:
            store.close()

    def _read_people(self) -> dict[str, Any]:
        from supervisor.jobs.people import PeopleQuery
        from supervisor.observe import people
        from supervisor.observe.report import Finished, build_report

        store = self._reader()
        try:
            report = build_report(Finished(*row) for row in store.finished_figures(None))
            wanted = PeopleQuery()
            hours_of_day = store.people(wanted, "hour_of_day")
            return {**report, "people": people.summarize(store.people(wanted, "total"), hours_of_day),
                    "hours_of_day": hours_of_day}
        finally:
            store.close()

    def status(self) -> dict[str, Any]:
        return dict(self._status.get(), gpu_trend=self.trend.points())

    def people(self) -> dict[str, Any]:
        return {k: v for k, v in self._people.get().items() if k != "hours_of_day"}

    def metrics(self) -> bytes:
        return generate_latest(self.registry)

    def html(self) -> str:
        st = self.status()
        ppl = self._people.get()
        return render_page(st, ppl)


def _eta(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _rows(items: list[str]) -> str:
    return "".join(items)


def render_page(st: dict[str, Any], ppl: dict[str, Any]) -> str:
    """The page, from /api/status's and /api/people's content."""
    charts: dict[str, Any] = {}
    d = st["daemon"]
    head = (f"<h1>video-supervisor</h1><p class=muted>{'running' if d['running'] else 'not running'}"
            + (f", {escape(str(d['mode']))}, pid {d['pid']}" if d["running"] else "")
            + f" · refreshed {time.strftime('%H:%M:%S')}</p>")
    if st.get("store_trouble"):
        head += f'<p class="bad">PAUSED: the job store refuses writes ({escape(str(st["store_trouble"]))})</p>'
    jobs = st["jobs"]
    eta = st.get("eta_seconds")
    queue = (f"<h2>Queue</h2><p>{len(st['running'])} running, {jobs.get('queued', 0) + jobs.get('failed', 0)} "
             f"waiting, {jobs.get('done', 0)} done, <span class={'bad' if jobs.get('dead') else 'ok'}>"
             f"{jobs.get('dead', 0)} given up on</span>" + (f" · ETA {format_duration(eta)}" if eta else "") + "</p>"
             + ("" if not st["queued_by_camera"] else
                '<table class="numbers queue"><tr><th class=l>camera</th><th>waiting</th><th>video-s per s</th>'
                "<th>its backlog alone</th></tr>"
                + _rows([f"<tr><td class=l>{escape(cam)}</td><td data-value=\"{n}\">{n}</td>"
                         f"<td>{(st['speed'].get(cam) or {}).get('video_seconds_per_second') or '-'}</td>"
                         f"<td>{_eta(st.get('eta_seconds_by_camera', {}).get(cam))}</td></tr>"
                         for cam, n in sorted(st["queued_by_camera"].items())]) + "</table>"))
    running = ("<h2>Running</h2>" + ("<p class=muted>nothing running</p>" if not st["running"] else
               '<table class="numbers running"><tr><th class=l>camera</th><th class=l>video</th><th>GPU</th>'
               "<th>done</th><th>fps</th><th>ETA</th></tr>"
               + _rows([f"<tr><td class=l>{escape(r['camera'])}</td><td class=l>{escape(Path(r['video']).name)}</td>"
                        f"<td>{'-' if r['gpu'] is None else r['gpu']}</td>"
                        f"<td>{'-' if r['percent'] is None else str(r['percent']) + ' %'}</td>"
                        f"<td>{r['fps'] or '-'}</td>"
                        f"<td>{format_duration(r['eta_seconds']) if r['eta_seconds'] else '-'}</td></tr>"
                        for r in st["running"]]) + "</table>"))
    io = io_lines(st.get("io") or {})
    running += ("<h2>Videos share and job store</h2>" + "".join(f"<p>{escape(line.strip())}</p>" for line in io)
                if io else "")
    gpus = "<h2>GPUs</h2>"
    if not st["gpus"]:
        gpus += "<p class=muted>no GPU monitoring (no NVIDIA driver, or probe = none)</p>"
    for g in st["gpus"]:
        points = [p for p in st.get("gpu_trend", []) if p["gpu"] == g["gpu"]]
        labels = [time.strftime("%H:%M", time.localtime(p["at"])) for p in points]
        gpus += (f"<h3>GPU {g['gpu']}: {escape(str(g.get('health')))}, limit {g.get('limit')}</h3>"
                 f"<p>{g.get('temperature')} C, {g.get('utilization')} % busy, {g.get('memory_used_mb')} of "
                 f"{g.get('memory_total_mb')} MB</p>"
                 + "".join(f"<p class=muted>{escape(line)}</p>" for line in gpu_details(g)))
        for field, unit in (("temperature", "temperature (C)"), ("limit", "jobs allowed at once"),
                            ("utilization", "busy (%)"), ("memory_used_mb", "memory in use (MB)")):
            key = f"gpu{g['gpu']}{field}"
            charts[key] = {"kind": "bars", "unit": f"{unit}, last hours", "labels": labels,
                           "values": [p[field] or 0 for p in points]}
            gpus += canvas(key, 90)
    failures = ("<h2>Recent failures</h2>" + ("<p class=muted>none</p>" if not st["recent_failures"] else
                '<table class="numbers failures"><tr><th class=l>camera</th><th class=l>video</th><th>state</th>'
                "<th>attempts</th><th class=l>why</th></tr>"
                + _rows([f"<tr><td class=l>{escape(f['camera'])}</td><td class=l>{escape(Path(f['video']).name)}"
                         f"</td><td>{escape(f['state'])}</td><td>{f['attempts']}</td>"
                         f"<td class=l>{escape(f['error'])}</td></tr>" for f in st["recent_failures"]])
                + "</table>")
                + f"<p>{st['damaged']['videos']} recording(s) done with damage ({st['damaged']['seconds']} s).</p>")
    summary = ppl.get("people") or []
    people_html = "<h2>People</h2>" + ("<p class=muted>none recorded yet</p>" if not summary else
                                       '<table class="numbers people"><tr><th class=l>camera</th><th class=l>region'
                                       "</th><th>person-hours</th><th>occupied hours</th><th>peak</th><th>visits</th>"
                                       "<th>busiest hour</th><th>hours recorded</th></tr>"
                                       + _rows([f"<tr><td class=l>{escape(r['camera'])}</td><td class=l>"
                                                f"{escape(r['region'])}</td>"
                                                f"<td data-value=\"{round(r['person_seconds'] / 3600, 3)}\">"
                                                f"{r['person_seconds'] / 3600:.2f}</td>"
                                                f"<td>{r['occupied_seconds'] / 3600:.2f}</td><td>{r['peak']}</td>"
                                                f"<td>{r['visits']}</td><td>{r['busiest_hour'] or '-'}</td>"
                                                f"<td>{r['covered_seconds'] / 3600:.2f}</td></tr>" for r in summary])
                                       + "</table>")
    for n, r in enumerate(summary):
        by_hour = {int(h["period"]): h for h in ppl.get("hours_of_day", [])
                   if h["camera"] == r["camera"] and h["region"] == r["region"]}
        values = [round(by_hour[h]["person_seconds"] / by_hour[h]["covered_seconds"], 3)
                  if h in by_hour and by_hour[h]["covered_seconds"] > 0 else 0.0 for h in range(24)]
        charts[f"p{n}"] = {"kind": "bars", "unit": "people present on average, by hour of the day",
                           "labels": [f"{h:02d}" for h in range(24)], "values": values}
        people_html += f"<h3>{escape(r['camera'])} · {escape(r['region'])}</h3>{canvas(f'p{n}', 120)}"
    return page("video-supervisor", head + queue + running + gpus + failures + people_html, charts, refresh=10)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CLIENT_TIMEOUT_SECONDS  # a client that stalls mid-request loses its thread, nobody else's

    def do_GET(self) -> None:
        if not self.server.slots.acquire(blocking=False):
            self._send(503, "text/plain; charset=utf-8", b"busy: too many clients at once\n")
            return
        try:
            self._answer(self.path.split("?", 1)[0])
        finally:
            self.server.slots.release()

    def _answer(self, path: str) -> None:
        pages = self.server.pages
        try:
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, pages.metrics())
            elif pages.sources is None:
                self._send(404, "text/plain; charset=utf-8", b"only /metrics here\n")
            elif path == "/":
                self._send(200, "text/html; charset=utf-8", pages.html().encode())
            elif path == "/api/status":
                self._send(200, "application/json", json.dumps(pages.status(), default=str).encode())
            elif path == "/api/people":
                self._send(200, "application/json", json.dumps(pages.people(), default=str).encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: /, /api/status, /api/people, /metrics\n")
        except Exception as exc:  # a store that cannot be read now: say so, keep serving
            self._send(503, "text/plain; charset=utf-8", f"cannot read the job store now: {exc}\n".encode())

    def _send(self, code: int, kind: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; "
                         "style-src 'unsafe-inline'; img-src data:")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # requests are not the journal's business


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], pages: Pages) -> None:
        self.pages = pages
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


def serve(host: str, port: int, pages: Pages) -> _Server:
    """Listen now (OSError when the address is taken), answer on threads of its own."""
    server = _Server((host, port), pages)
    threading.Thread(target=server.serve_forever, name="web", daemon=True).start()
    return server
