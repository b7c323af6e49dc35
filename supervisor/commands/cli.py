"""The command line: `video-supervisor` (= `python -m supervisor`).

Without a subcommand it runs the seed's orchestrator: process every discovered
video, then exit (or with --daemon, run forever). `demo` generates a sample
tree and processes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from supervisor import __version__
from supervisor.app import run_supervisor
from supervisor.config import (
    LOG_LEVELS,
    ConfigError,
    Settings,
    is_store_url,
    load_settings,
)
from supervisor.jobs.connect import open_reader
from supervisor.jobs.discovery import scan
from supervisor.jobs.model import StoreError
from supervisor.protocol import EX_CONFIG, EX_USAGE
from supervisor.protocol.names import PathParser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="video-supervisor",
        description="Find camera recordings, queue them oldest first, and run detection workers "
                    "at a parallelism that follows the GPU's health.",
        epilog="other commands: `video-supervisor status [--json]` (what is running, queue, ETA, failures), "
               "`video-supervisor report [--since DATE] [--json|--csv]` (per-camera figures), "
               "`video-supervisor demo` (a sample tree, processed), "
               "`video-supervisor retry JOB...|--dead` (run again what failed), "
               "`video-supervisor log JOB [--follow]` (one job's worker output), "
               "`video-supervisor model fetch|export|check` (the detector), "
               "`video-supervisor setup-service [--root DIR]` (install the systemd service), "
               "`video-supervisor files [NAME]` (the unit, settings reference, ROI format and more), "
               "`video-supervisor store copy SRC DST` (move the job history, e.g. SQLite to PostgreSQL). "
               "Exit status: 0 all done, 1 some job failed for good, 2 usage, 70 a task of the daemon died, "
               "75 store in use, 78 bad settings/ROI file/model, 130 interrupted.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--settings", type=Path, help="TOML settings file (flags override it)")
    p.add_argument("--videos-dir", type=Path, help="directory tree of recordings")
    p.add_argument("--cameras", nargs="+", metavar="CAMERA", help="only these cameras, e.g. camera_35 camera_22")
    p.add_argument("--duration", type=float, help="process only the first N seconds of each video (0: all)")
    p.add_argument("--config", type=Path, dest="rois", metavar="ROI_FILE", help="ROI configuration file")
    p.add_argument("--model", type=Path, help="YOLO weights the worker loads (default models/person.pt; never "
                                             "downloaded at run time)")
    p.add_argument("--list", action="store_true", help="list discovered videos per camera and exit")
    p.add_argument("--max-parallel", type=int, help="parallel jobs on a healthy GPU (default 4)")
    p.add_argument("--gpu-temp-limit", type=float, help="temperature (C) above which 1 job runs (default 80)")
    p.add_argument("--gpus", type=_gpu_list, metavar="0,1", help="GPU indices to use (default: every GPU)")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="logging verbosity (default INFO)")
    p.add_argument("--daemon", action="store_true", help="run forever: rescan periodically and on SIGHUP")
    p.add_argument("--state-db", help="job store: a SQLite file, or a postgresql:// URL shared by several hosts "
                                      "(put a password in PGPASSWORD or ~/.pgpass, never here)")
    p.add_argument("--output-dir", type=Path,
                   help="where results go: OUTPUT/<the video's path under the videos directory>/")
    p.add_argument("--log-dir", type=Path, help="where processing_*.log and errors_*.log go")
    p.add_argument("--reprocess", action="store_true", help="run again videos already done")
    p.add_argument("--allow-root", action="store_true", help="allow running as root")
    p.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto", help=argparse.SUPPRESS)
    return p


def _gpu_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of GPU indices such as 0,1") from None


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Embedded defaults, then the settings file, then flags; validated as a whole."""
    from supervisor.config import validate

    s = load_settings(args.settings)
    top: dict[str, Any] = {"source": s.source}
    if args.state_db is not None:
        if is_store_url(args.state_db):
            top["store_url"] = args.state_db
        else:
            top["state_db"] = Path(args.state_db)
            top["store_url"] = ""
    for flag, key in (("videos_dir", "videos_dir"), ("output_dir", "output_dir"),
                      ("log_dir", "log_dir"), ("rois", "rois_file"), ("duration", "duration")):
        value = getattr(args, flag)
        if value is not None:
            top[key] = value
    if args.cameras:
        top["cameras"] = tuple(args.cameras)
    if args.reprocess:
        top["reprocess"] = True
    if args.allow_root:
        top["allow_root"] = True
    if args.max_parallel is not None:
        top["scheduler"] = dataclasses.replace(s.scheduler, max_parallel=args.max_parallel)
    if args.gpu_temp_limit is not None:
        gpu = s.gpu
        warm = gpu.temp_warm if gpu.temp_warm < args.gpu_temp_limit else args.gpu_temp_limit - 10
        top["gpu"] = dataclasses.replace(gpu, temp_limit=args.gpu_temp_limit, temp_warm=warm)
    if args.gpus is not None:
        top["gpu"] = dataclasses.replace(top.get("gpu", s.gpu), gpus=args.gpus)
    if args.log_level:
        top["logging"] = dataclasses.replace(s.logging, level=args.log_level)
    if args.model is not None:
        top["worker"] = dataclasses.replace(s.worker, model=args.model)
    s = dataclasses.replace(s, **top)
    # Absolute paths from here on: the store keys jobs by path, whatever the working directory.
    s = dataclasses.replace(
        s, videos_dir=s.videos_dir.absolute(), output_dir=s.output_dir.absolute(),
        state_db=s.state_db.absolute(), log_dir=s.log_dir.absolute(),
        rois_file=s.rois_file.absolute() if s.rois_file else None,
    )
    if s.source == "defaults":
        s = dataclasses.replace(s, source="command line")
    try:
        validate(s)
    except ConfigError as exc:
        given = _flag_for(exc.key, args)
        if given is None:
            raise
        raise ConfigError("command line", given, exc.reason) from None
    return s


# Settings keys a flag sets: an error in the value is the flag's, not the settings file's.
_FLAG_KEYS = {"duration": "duration", "scheduler.max_parallel": "max_parallel", "gpu.temp_limit": "gpu_temp_limit",
              "gpu.temp_warm": "gpu_temp_limit", "gpu.gpus": "gpus", "logging.level": "log_level",
              "worker.model": "model"}


def _flag_for(key: str, args: argparse.Namespace) -> str | None:
    if key.startswith("cameras[") and args.cameras:
        return "--cameras"
    dest = _FLAG_KEYS.get(key)
    if dest is None or getattr(args, dest, None) is None:
        return None
    return "--" + dest.replace("_", "-")


def _human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def printable(value: object) -> str:
    """A name as one line of text: control characters (a newline in a file name) are escaped."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def check_videos_dir(s: Settings) -> None:
    """The videos folder must be there and listable (a share that went away, a permission change)."""
    try:
        with os.scandir(s.videos_dir) as entries:
            next(entries, None)
    except FileNotFoundError:
        raise ConfigError(s.source, "videos_dir", f"{s.videos_dir}: videos directory does not exist") from None
    except OSError as exc:
        raise ConfigError(s.source, "videos_dir", f"{s.videos_dir}: cannot list: {exc.strerror or exc}") from None


def check_cameras(s: Settings, *, flag: bool = False) -> list[str]:
    """A camera asked for that never recorded here is a typo (raised); the warnings worth a line: a videos
    folder one level off, ROI cameras with no recordings."""
    from supervisor.commands.mistakes import (
        camera_folders,
        check_asked_cameras,
        check_roi_typos,
        layout_warnings,
        roi_warnings,
    )

    if not s.videos_dir.is_dir():
        return []
    present = camera_folders(s.videos_dir)
    if not present:
        return []
    warnings = check_asked_cameras(s, present, flag=flag)
    warnings += layout_warnings(s.videos_dir, present)
    if s.rois_file is not None:
        from supervisor.protocol.rois import load_rois

        roi_cameras = load_rois(s.rois_file).cameras
        check_roi_typos(s.rois_file, roi_cameras, present)
        warnings += roi_warnings(s.rois_file, roi_cameras, present)
    return warnings


def warn(lines: list[str]) -> None:
    for line in lines:
        print(f"video-supervisor: warning: {line}", file=sys.stderr)


def list_videos(s: Settings, out: Any = sys.stdout) -> int:
    """--list: every discovered video per camera, oldest first, with its job state."""
    try:
        result = scan(s.videos_dir, extensions=s.discovery.extensions, settle_seconds=0.0, now=time.time(),
                      parser=PathParser(s.discovery.pattern), cameras=s.cameras)
    except OSError as exc:
        print(f"video-supervisor: {s.videos_dir}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EX_CONFIG
    store = open_reader(s.store_url or s.state_db)
    try:
        known = store.by_path()
    finally:
        store.close()
    now = time.time()
    by_camera: dict[str, list[Any]] = {}
    for v in result.videos:
        by_camera.setdefault(v.camera, []).append(v)
    for camera in sorted(by_camera):
        videos = by_camera[camera]
        print(f"{printable(camera)}  ({len(videos)} video{'s' if len(videos) != 1 else ''})", file=out)
        for v in videos:
            job = known.get(str(v.path))
            if now - v.mtime < s.discovery.settle_seconds:
                state = "settling"
            elif job is None:
                state = "new"
            elif job.size != v.size or job.mtime != v.mtime:
                state = f"{job.state}, changed"
            else:
                state = job.state_text()
            when = v.recorded_at.strftime("%Y-%m-%d %H:%M:%S") + ("*" if v.time_from_mtime else " ")
            print(f"  {when}  {_human_size(v.size):>10}  {state:<16} {printable(v.path)}", file=out)
    total = len(result.videos)
    print(f"{total} video{'s' if total != 1 else ''} in {len(by_camera)} camera"
          f"{'s' if len(by_camera) != 1 else ''}" + ("  (* time from file mtime)" if any(
              v.time_from_mtime for v in result.videos) else ""), file=out)
    for path, why in result.skipped:
        print(f"skipped {printable(path)}: {why}", file=out)
    from supervisor.commands.mistakes import layout_warnings

    for line in layout_warnings(s.videos_dir, by_camera):
        print(f"warning: {line}", file=out)
    return 0


def check_rois(s: Settings) -> None:
    if s.rois_file is None:
        return
    from supervisor.protocol.rois import RoiError, load_rois

    try:
        load_rois(s.rois_file)
    except RoiError as exc:
        raise ConfigError(exc.source, exc.where, exc.reason) from exc


def main(argv: Sequence[str] | None = None, early_signals: list[int] | None = None) -> int:
    """`early_signals`: signals that arrived before the supervisor could handle them (see entry.py)."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv), early_signals if early_signals is not None else [])
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


# Subcommands with a module of their own, each with `main(argv) -> int`.
SUBCOMMANDS = {"demo": "demo", "store": "store_copy", "retry": "operate", "model": "model",
               "setup-service": "setup_service", "log": "job_log", "files": "host_files"}


def _main(argv: list[str], early_signals: list[int]) -> int:
    from supervisor.commands.mistakes import CamerasNotFound, check_writable
    from supervisor.commands.model import check_settings

    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        command: Any = importlib.import_module(f"supervisor.commands.{SUBCOMMANDS[argv[0]]}")
        code: int = command.main(argv[1:])
        return code
    if argv and argv[0] in ("status", "report"):
        from supervisor.commands.inspect import inspect

        return inspect(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
        if args.list:
            return list_videos(settings)
        check_videos_dir(settings)
        check_rois(settings)
        warn(check_cameras(settings, flag=bool(args.cameras)))
        warn(check_settings(settings))
        warn(check_writable(settings, daemon=args.daemon))
    except CamerasNotFound as exc:
        print(f"video-supervisor: {exc}", file=sys.stderr)
        return EX_USAGE
    except ConfigError as exc:
        print(f"video-supervisor: {exc}", file=sys.stderr)
        return EX_CONFIG
    except StoreError as exc:
        print(f"video-supervisor: {exc}", file=sys.stderr)
        return EX_CONFIG
    def reload() -> Settings:
        fresh = settings_from_args(args)
        check_videos_dir(fresh)
        check_rois(fresh)
        warn(check_cameras(fresh, flag=bool(args.cameras)))
        warn(check_settings(fresh))
        warn(check_writable(fresh, daemon=args.daemon))
        return fresh

    return run_supervisor(settings, daemon=args.daemon, loop=args.loop, reload=reload,
                          early_signals=early_signals)
