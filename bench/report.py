"""`report` on a large store: 100,000 done jobs, and a year of hourly people for 20 cameras.

Builds one SQLite store (rows written straight in, one transaction: the scheduler's own path is measured
by bench/store.py), then times the commands a manager runs, each as its own process as a user runs it:

    report                   throughput and people per camera and region (targets: under 2 s)
    report --by day --json   people per camera, region and day
    report --html FILE       the self-contained page (target: under 3 s for a year of 20 cameras)

    python bench/report.py [--jobs 100000] [--cameras 20] [--days 365]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.jobs.people import table
from supervisor.jobs.sqlite_store import JobStore

REPO = Path(__file__).resolve().parent.parent
REGIONS = ("counter", "door")


def build(db: Path, jobs: int, cameras: int, days: int) -> int:
    """`jobs` done jobs spread over `cameras` and `days`, each adding its hours' rows; the rows written."""
    JobStore.open(db).close()
    import sqlite3

    conn = sqlite3.connect(db)
    conn.executescript(table())
    start = datetime(2025, 1, 1)
    per_day = max(1, jobs // (cameras * days))
    rows = 0
    with conn:
        job_rows = []
        for n in range(jobs):
            camera, rest = n % cameras, n // cameras
            day, slot = rest // per_day % days, rest % per_day
            when = start + timedelta(days=day, hours=8 + 15 * slot / per_day)
            job_rows.append((n + 1, f"camera_{camera}", f"/videos/camera_{camera}/{n}.mp4", when.isoformat(),
                             1_000_000, 1.0, "done", 1, 1.0, 2.0, 60.0, 900.0, f"camera_{camera}/{n}.mp4", 1))
        conn.executemany("INSERT INTO jobs (id, camera, path, recorded_at, size, mtime, state, attempts, "
                         "discovered_at, finished_at, duration_seconds, video_seconds, result_key, people_recorded) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", job_rows)
        people = []
        for n, row in enumerate(job_rows):
            when = datetime.fromisoformat(row[3])
            hour = when.strftime("%Y-%m-%dT%H:00")
            busy = math.exp(-((when.hour - 13) ** 2) / 6) + 0.8 * math.exp(-((when.hour - 19.5) ** 2) / 3)
            for region in REGIONS:
                ps = 900 * busy * (2.5 if region == "counter" else 1.0)
                people.append((n + 1, row[1], region, hour, 900.0, min(900.0, ps * 0.6), ps, max(1, round(busy * 4)),
                               round(busy * 5), 0.0))
        conn.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", people)
        rows = len(people)
    conn.close()
    return rows


def timed(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "supervisor", *args], capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"report failed ({proc.returncode}): {proc.stderr.strip()}")
    return seconds, proc.stdout


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--cameras", type=int, default=20)
    p.add_argument("--days", type=int, default=365)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "jobs.db"
        started = time.perf_counter()
        rows = build(db, args.jobs, args.cameras, args.days)
        print(f"store: {args.jobs} done jobs, {rows} people rows ({args.cameras} cameras x 2 regions, "
              f"{args.days} days), built in {time.perf_counter() - started:.1f} s")
        print("| command | seconds | target |")
        print("|---|---|---|")
        seconds, _ = timed("--version")
        print(f"| `video-supervisor --version` (the interpreter's start, for reference) | {seconds:.2f} | |")
        seconds, _ = timed("report", "--state-db", str(db))
        print(f"| `report` | {seconds:.2f} | < 2 |")
        seconds, _ = timed("report", "--state-db", str(db), "--by", "day", "--json")
        print(f"| `report --by day --json` | {seconds:.2f} | |")
        page = Path(tmp) / "report.html"
        seconds, _ = timed("report", "--state-db", str(db), "--html", str(page))
        print(f"| `report --html` ({page.stat().st_size / 2**20:.1f} MiB) | {seconds:.2f} | < 3 |")


if __name__ == "__main__":
    main()
