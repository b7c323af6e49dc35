"""`status` and `report`: the read-only looks at the job store (and the running daemon's snapshot).

They open the store with a reader (`JobReader`), never the writer's lock, so they work beside a
running daemon, on either engine.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from supervisor.jobs.connect import open_reader
from supervisor.jobs.model import StoreError, StoreUnavailable
from supervisor.jobs.sqlite_store import store_error
from supervisor.protocol import EX_CONFIG, EX_USAGE


def inspect(command: str, argv: list[str]) -> int:
    """`status` and `report`: read-only looks at the store (and the daemon's snapshot)."""
    p = argparse.ArgumentParser(prog=f"video-supervisor {command}")
    p.add_argument("--settings", type=Path)
    p.add_argument("--state-db", help="a SQLite file or a postgresql:// URL")
    p.add_argument("--log-dir", type=Path, help="accepted for symmetry with the main command")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    if command == "report":
        from supervisor.observe.people import BY

        p.add_argument("--csv", action="store_true")
        p.add_argument("--since", help="only jobs finished since this date/time (e.g. 2025-11-14)")
        p.add_argument("--by", choices=BY, help="people per camera, region and period of recorded time")
        p.add_argument("--from", dest="start", metavar="DATE", help="people recorded from this date (or date-time)")
        p.add_argument("--to", dest="end", metavar="DATE", help="people recorded up to this date, included")
        p.add_argument("--cameras", nargs="+", default=[], metavar="CAMERA", help="only these cameras' people")
        p.add_argument("--regions", nargs="+", default=[], metavar="REGION", help="only these regions' people")
        p.add_argument("--html", type=Path, metavar="FILE",
                       help="write one self-contained page of charts and tables (opens with no network)")
    args = p.parse_args(argv)
    from supervisor.commands.mistakes import reader_settings

    s = reader_settings(command, args.settings, args.state_db)
    if isinstance(s, int):
        return s
    url, db = s.store_url, s.state_db
    try:
        return _inspect_store(command, args, url, db, s.status_file)
    except StoreUnavailable as exc:  # a server that does not answer: not a settings mistake
        print(f"video-supervisor {command}: {exc}", file=sys.stderr)
        return 1
    except (StoreError, OSError, sqlite3.DatabaseError) as exc:
        reason = exc if isinstance(exc, StoreError) else store_error(db, exc, reading=True)
        print(f"video-supervisor {command}: {reason}", file=sys.stderr)
        return EX_CONFIG


def _inspect_store(command: str, args: argparse.Namespace, url: str, db: Path, status_file: Path) -> int:
    store = open_reader(url or db)
    try:
        if command == "status":
            from supervisor.observe.status import collect_status, read_snapshot, render_status

            st = collect_status(store, read_snapshot(status_file))
            print(json.dumps(st, indent=2, default=str) if args.json else render_status(st))
            return 0
        return _report(store, args, status_file)
    finally:
        store.close()


def _report(store: Any, args: argparse.Namespace, status_file: Path) -> int:
    """Throughput and people over every recording, and the running daemon's GPUs over the last hour; with --by,
    people per period alone."""
    from supervisor.observe import people
    from supervisor.observe.report import Finished, build_report, render_csv, render_json, render_table

    try:
        since = datetime.fromisoformat(args.since).timestamp() if args.since else None
    except ValueError:
        print(f"video-supervisor report: --since {args.since!r} is not a date (e.g. 2025-11-14)", file=sys.stderr)
        return EX_USAGE
    try:
        wanted = people.query(args.start, args.end, args.cameras, args.regions)
    except ValueError as exc:
        print(f"video-supervisor report: {exc}", file=sys.stderr)
        return EX_USAGE
    if args.by:
        rows = people.by_period(store, wanted, args.by)
        print(json.dumps({"by": args.by, "rows": rows}, indent=2) if args.json else people.render_csv(rows)
              if args.csv else people.render_periods(rows, args.by), end="" if args.csv else "\n")
        return 0
    if args.html:
        return _write_html(args.html, store, wanted)
    report = build_report(Finished(*row) for row in store.finished_figures(since))
    if args.csv:
        print(render_csv(report), end="")
        return 0
    totals = people.summary(store, wanted)
    from supervisor.observe.status import gpu_trend_lines, read_snapshot

    snapshot = read_snapshot(status_file)
    gpus = [{"gpu": g["gpu"], **(g.get("last_hour") or {})} for g in (snapshot or {}).get("gpus", [])]
    if args.json:
        print(json.dumps({**json.loads(render_json(report)), "people": totals, "gpus_last_hour": gpus}, indent=2))
    else:
        trend = gpu_trend_lines(gpus)
        print(render_table(report) + "\n\n" + people.render_summary(totals)
              + ("\n\nGPUs, the running daemon's last hour:\n" + "\n".join(trend) if trend else ""))
    return 0


def _write_html(path: Path, store: Any, wanted: Any) -> int:
    from supervisor.observe.html_report import write

    try:
        cameras = write(path, store, wanted)
    except OSError as exc:
        print(f"video-supervisor report: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EX_CONFIG
    print(f"wrote {path} ({cameras} camera{'s' if cameras != 1 else ''}, {path.stat().st_size // 1024} KiB; opens "
          "with no network)")
    return 0
