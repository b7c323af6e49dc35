"""A stand-in worker that speaks the worker protocol without doing detection.

It sleeps, prints progress lines, writes a small summary atomically, records
when it ran, and exits with a chosen code. Scheduling tests, benchmarks and the
offline demo point `[worker] command` at it:

    {python} -m workers.fake --video {video} --camera {camera} --out {out} --seconds 0.2

`--plan FILE` (JSON) chooses per video file name what each attempt does:
    {"b.mp4": {"exit": [75, 0], "seconds": 0.1}}  -> attempt 1 exits 75, attempt 2 exits 0.
    {"c.mp4": {"damaged_seconds": 3.2}}  -> done, reporting 3.2 s of the recording undecodable.
`--duration N` (N > 0) reports the run as covering only the first N seconds, as the real worker does.
`--record FILE` appends one JSON line per run: pid, camera, video, out, claim, gpu, start, end, exit.
`--hang-after-done` prints its done event and writes its results, then never exits (stuck in shutdown).
`--grandchild SECONDS` leaves a process behind that lives that long (`--escape`: in a session of its own,
as a double fork makes it); its pid is appended to `--grandchild-pids FILE`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from supervisor.protocol.lifeline import die_with_parent
from supervisor.protocol.results import video_identity


def _append(path: Path, record: dict[str, Any]) -> None:
    # O_APPEND writes of one short line do not interleave between processes.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str, pad_bytes: int = 0, write_seconds: float = 0.0) -> None:
    """Like the real worker: a hidden temporary name, renamed once complete; removed if writing fails."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            chunks = max(1, int(write_seconds / 0.05)) if pad_bytes else 0
            for _ in range(chunks):
                f.write(" " * (pad_bytes // chunks))
                f.flush()
                time.sleep(write_seconds / chunks)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    die_with_parent()
    p = argparse.ArgumentParser(prog="workers.fake")
    p.add_argument("--video", required=True)
    p.add_argument("--camera", default="")
    p.add_argument("--out", default="")
    p.add_argument("--rois", default="")
    p.add_argument("--duration", default="0")
    p.add_argument("--seconds", type=float, default=0.1)
    p.add_argument("--exit", type=int, default=0, dest="exit_code")
    p.add_argument("--progress", type=int, default=3, help="progress lines to print")
    p.add_argument("--plan", default="")
    p.add_argument("--record", default="")
    p.add_argument("--ignore-term", action="store_true", help="ignore SIGTERM (to test SIGKILL escalation)")
    p.add_argument("--output-bytes", type=int, default=0, help="pad the summary to this size (disk-full tests)")
    p.add_argument("--write-seconds", type=float, default=0.0, help="spread the write over this long")
    p.add_argument("--hang-after-done", action="store_true")
    p.add_argument("--grandchild", type=float, default=0.0)
    p.add_argument("--escape", action="store_true")
    p.add_argument("--grandchild-pids", default="")
    p.add_argument("--hold-while", default="", help="after its progress, wait while this file exists (a test's "
                                                   "gate: the job stays running, mid-way, until the test lets go)")
    args = p.parse_args(argv)
    if args.grandchild > 0:
        _leave_behind(args.grandchild, escape=args.escape, pids=args.grandchild_pids)

    seconds: float = args.seconds
    exit_code: int = args.exit_code
    attempt = int(os.environ.get("VIDEO_SUPERVISOR_ATTEMPT", "1") or 1)
    if args.plan:
        plan = json.loads(Path(args.plan).read_text()).get(Path(args.video).name, {})
        codes = plan.get("exit", [exit_code])
        codes = codes if isinstance(codes, list) else [codes]
        exit_code = int(codes[min(attempt, len(codes)) - 1])
        seconds = float(plan.get("seconds", seconds))
        damaged = float(plan.get("damaged_seconds", 0.0))
    else:
        damaged = 0.0

    started = time.time()
    record = {
        "pid": os.getpid(), "camera": args.camera, "video": args.video, "attempt": attempt, "out": args.out,
        "claim": os.environ.get("VIDEO_SUPERVISOR_CLAIM"),
        "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": started,
    }
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        def on_term(signum: int, frame: Any) -> None:
            if args.record:
                _append(Path(args.record), {**record, "end": time.time(), "exit": 143})
            os._exit(143)
        signal.signal(signal.SIGTERM, on_term)

    if not Path(args.video).is_file():
        print(f"{args.video}: no such video", file=sys.stderr)
        return 65
    frames = max(1, args.progress) * 100
    steps = max(1, args.progress)
    for i in range(steps):
        time.sleep(seconds / steps)
        print(json.dumps({"event": "progress", "frame": (i + 1) * 100, "frames": frames,
                          "fps": round(100 * steps / max(seconds, 1e-3), 1)}), flush=True)
    while args.hold_while and Path(args.hold_while).exists():
        time.sleep(0.05)
    if exit_code != 0:
        print(f"fake worker failing on purpose with exit {exit_code}", file=sys.stderr)
    elif args.out:
        out = Path(args.out)
        summary = out / "summary.json"
        try:
            out.mkdir(parents=True, exist_ok=True)
            for stale in out.glob(".*.tmp"):  # left by an attempt that was killed mid-write
                stale.unlink(missing_ok=True)
            limit = float(args.duration or 0)
            # Named as the real worker names it: the supervisor checks it after a crash (exactly once).
            _write_atomic(summary, json.dumps({
                "video": video_identity(Path(args.video)), "camera": args.camera, "frames": frames,
                "processed_seconds": limit or seconds, "duration_limited": limit > 0,
                "damage": {"seconds": damaged},
                # One person in view the whole time, in the hour the recording began.
                "hours": [{"region": "frame", "hour": "2025-11-14T10:00", "covered_seconds": limit or seconds,
                           "occupied_seconds": limit or seconds, "person_seconds": limit or seconds, "peak": 1,
                           "visits": 1, "damaged_seconds": damaged}]}), args.output_bytes, args.write_seconds)
        except OSError as exc:
            print(f"{args.video}: cannot write results under {out}: {exc.strerror or exc}", file=sys.stderr)
            if args.record:
                _append(Path(args.record), {**record, "end": time.time(), "exit": 75})
            return 75
        print(json.dumps({"event": "done", "output": str(summary), "video_seconds": limit or seconds,
                          "duration_limited": limit > 0, "damaged_seconds": damaged}), flush=True)
    if args.record:
        _append(Path(args.record), {**record, "end": time.time(), "exit": exit_code})
    if args.hang_after_done:
        while True:
            time.sleep(3600)
    return exit_code


def _leave_behind(seconds: float, *, escape: bool, pids: str) -> None:
    """Fork a process that sleeps `seconds` with the worker's stdout and stderr still open."""
    if os.fork() != 0:
        if escape:
            os.wait()  # the middle process exits at once: its child is an orphan
        return
    if escape:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
    if pids:
        _append(Path(pids), {"pid": os.getpid()})
    time.sleep(seconds)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
