"""`video-supervisor log JOB [--follow]`: what one job's worker said, every attempt of it.

    video-supervisor log 42              its output so far (attempts, stderr, events, how each ended)
    video-supervisor log 42 --follow     and what follows, until the job is no longer running

The job's line comes from the store (either engine); the output from `log_dir/jobs/42.log`, kept
by the daemon or once run that ran it, on this host.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import BinaryIO

from supervisor.commands.mistakes import reader_settings
from supervisor.jobs.connect import open_reader
from supervisor.jobs.contract import JobReader
from supervisor.jobs.model import Job, JobState, StoreError, StoreUnavailable
from supervisor.observe.job_logs import job_log_path
from supervisor.protocol import EX_OK

FOLLOW_POLL_SECONDS = 0.5


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="video-supervisor log", description=(__doc__ or "").splitlines()[0])
    p.add_argument("job", type=int, metavar="JOB_ID", help="a job id, as `status` and `--list` show it")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job is no longer running")
    p.add_argument("--settings", type=Path)
    p.add_argument("--state-db", help="a SQLite file or a postgresql:// URL")
    p.add_argument("--log-dir", type=Path, help="where the run kept its logs (default: from the settings)")
    return p


def _job(store: JobReader, job_id: int) -> Job | None:
    return next((j for j in store.jobs() if j.id == job_id), None)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    s = reader_settings("log", args.settings, args.state_db)
    if isinstance(s, int):
        return s
    log_dir: Path = args.log_dir if args.log_dir is not None else s.log_dir
    try:
        store = open_reader(s.store_url or s.state_db)
    except (StoreError, StoreUnavailable) as exc:
        print(f"video-supervisor log: {exc}", file=sys.stderr)
        return 1
    try:
        job = _job(store, args.job)
        if job is None:
            where = "the shared store" if s.store_url else str(s.state_db)
            print(f"video-supervisor log: no job {args.job} in {where}", file=sys.stderr)
            return 1
        print(f"job {job.id} {job.camera}/{job.path.name}: {job.state_text()}, attempt {job.attempts}", flush=True)
        path = job_log_path(log_dir, job.id)
        if not path.is_file():
            print(f"video-supervisor log: no worker output kept for job {job.id} at {path}" +
                  (": it has not started yet" if job.state is JobState.QUEUED and not job.attempts else
                   " (it ran on another host sharing the store, before output was kept, or its log was removed "
                   "after retention_days)"), file=sys.stderr)
            return 1 if job.state is not JobState.QUEUED else EX_OK
        with open(path, "rb") as f:
            _copy(f)
            while args.follow:
                job = _job(store, args.job) or job
                if job.state is not JobState.RUNNING and not _copy(f):
                    print(f"job {job.id}: {job.state_text()}", flush=True)
                    break
                time.sleep(FOLLOW_POLL_SECONDS)
                _copy(f)
    except KeyboardInterrupt:
        return EX_OK
    finally:
        store.close()
    return EX_OK


def _copy(f: BinaryIO) -> bool:
    """Print what the file has beyond what was printed; whether there was any."""
    data = f.read()
    if data:
        sys.stdout.write(data.decode("utf-8", errors="replace"))
        sys.stdout.flush()
    return bool(data)
