"""Kill -9 soak: a daemon SIGKILLed at random moments, again and again, on each job store engine.

The worker counts its completions (one record per attempt that exits 0). After the kills a last
daemon runs the tree to the end; the script prints, per engine, how many videos completed once,
twice or more, how many were recorded done from their result set after a kill (their worker
had finished, its daemon died before recording it), how many were never completed by a worker that
lived to log it (killed between its summary and its own record line: done from its result set),
and how many result sets in place were not written by the attempt the store recorded. The
promise: none completed twice, none lost, every result set the recorded attempt's.

    python bench/soak.py [--engine sqlite|postgres|both] [--kills 100] [--videos 120]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from supervisor.config import is_store_url  # noqa: E402
from supervisor.jobs.connect import open_reader  # noqa: E402
from supervisor.jobs.model import Job, JobState  # noqa: E402


def make_tree(root: Path, count: int) -> list[Path]:
    old = time.time() - 3600
    made = []
    for i in range(count):
        p = root / f"camera_{i % 4}" / f"camera_{i % 4}_20251114_{i // 60:02d}{i % 60:02d}00.mp4"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(512))
        os.utime(p, (old, old))
        made.append(p)
    return made


def settings(tmp: Path, store: str) -> Path:
    cmd = ["{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}", "--out", "{out}",
           "--seconds", "0.3", "--record", str(tmp / "runs.jsonl")]
    path = tmp / "vs.toml"
    path.write_text(
        f'videos_dir = "{tmp / "videos"}"\noutput_dir = "{tmp / "results"}"\nstate_db = "{store}"\n'
        f'log_dir = "{tmp / "logs"}"\nallow_root = true\n'
        "[scheduler]\nmax_parallel = 4\nrescan_seconds = 2\ndrain_seconds = 5\nlease_seconds = 5\n"
        '[discovery]\nsettle_seconds = 0\n[gpu]\nprobe = "none"\n[metrics]\nlisten = ""\n'
        f"[worker]\ncommand = {json.dumps(cmd)}\nretry_backoff_seconds = 0.1\n")
    return path


def start(cfg: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "supervisor", "--settings", str(cfg), "--daemon"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def jobs(store: str) -> list[Job]:
    url = store if is_store_url(store) else ""
    reader = open_reader(url or Path(store))
    try:
        found: list[Job] = reader.jobs()
        return found
    finally:
        reader.close()


def states(store: str) -> list[JobState]:
    return [j.state for j in jobs(store)]


def foreign_results(tmp: Path, store: str) -> int:
    """Done jobs whose result set in place was not written by the attempt the store recorded (its claim)."""
    wrong = 0
    for job in jobs(store):
        summary = json.loads((tmp / "results" / str(job.result_key) / "summary.json").read_text())
        wrong += summary["video"].get("claim") != job.claim_token
    return wrong


def soak(tmp: Path, store: str, kills: int, videos: int, rng: random.Random) -> dict[str, object]:
    made = make_tree(tmp / "videos", videos)
    cfg = settings(tmp, store)
    started = time.monotonic()
    for _ in range(kills):
        proc = start(cfg)
        time.sleep(rng.uniform(0.4, 1.4))  # startup is about 0.3 s: killed before, during and after jobs
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = start(cfg)
    deadline = time.monotonic() + 600
    while True:
        now = states(store)
        if len(now) == videos and all(s is JobState.DONE for s in now):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"never finished: {Counter(str(s) for s in now)}")
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    records = [json.loads(line) for line in (tmp / "runs.jsonl").read_text().splitlines() if line.strip()]
    completions = Counter(r["video"] for r in records if r.get("exit") == 0)
    recovered = 0
    for log in (tmp / "logs").glob("processing_*.log"):
        recovered += log.read_text().count('"job_done_before_restart"')
    per_video = Counter(completions.get(str(v), 0) for v in made)
    return {"kills": kills, "videos": videos, "seconds": round(time.monotonic() - started, 1),
            "completed_once": per_video[1], "completed_twice_or_more": sum(n for k, n in per_video.items() if k > 1),
            "done_from_result_set": recovered, "never_completed_by_a_worker": per_video[0],
            "results_not_from_the_recorded_attempt": foreign_results(tmp, store)}


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--kills", type=int, default=100)
    p.add_argument("--videos", type=int, default=120)
    args = p.parse_args()
    rng = random.Random(20251129)
    engines = ("sqlite", "postgres") if args.engine == "both" else (args.engine,)
    for engine in engines:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            server = None
            if engine == "postgres":
                from tests.pg import PostgresServer

                server = PostgresServer()
                store = server.new_database()
            else:
                store = str(tmp / "state" / "jobs.sqlite3")
            try:
                result = soak(tmp, store, args.kills, args.videos, rng)
            finally:
                if server is not None:
                    server.close()
        print(f"{engine}: " + ", ".join(f"{k} {v}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
