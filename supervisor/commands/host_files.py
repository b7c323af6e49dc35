"""The files a host needs beside the program, shipped inside it: `video-supervisor files [NAME]`.

    video-supervisor files                         every shipped file, with where it lies
    video-supervisor files etc/rois.toml           one of them, printed (e.g. > /etc/video-supervisor/rois.toml)

They are the repository's `systemd/` and `etc/` folders (the unit, the sysusers and tmpfiles files,
the service's settings, the reference of every settings key, the ROI file format, the Prometheus
rules and the Grafana dashboard). A wheel carries them as package data under `supervisor/host/`;
a checkout reads them where they are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FOLDERS = ("systemd", "etc")


def root() -> Path:
    """Where the shipped files lie: inside the installed package, else the checkout."""
    packaged = Path(__file__).resolve().parents[1] / "host"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2]


def shipped() -> list[str]:
    base = root()
    return sorted(str(p.relative_to(base)) for folder in FOLDERS for p in (base / folder).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def host_file(name: str) -> Path:
    """A shipped file by its name in the repository (`systemd/video-supervisor.service`)."""
    if name not in shipped():
        raise FileNotFoundError(f"{name}: not a shipped file (they are: {', '.join(shipped())})")
    return root() / name


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="video-supervisor files", description=(__doc__ or "").splitlines()[0])
    p.add_argument("name", nargs="?", help="a file to print, as listed")
    args = p.parse_args(argv)
    if args.name is None:
        for name in shipped():
            print(f"{name:<48} {root() / name}")
        return 0
    try:
        sys.stdout.write(host_file(args.name).read_text())
    except FileNotFoundError as exc:
        print(f"video-supervisor files: {exc}", file=sys.stderr)
        return 1
    return 0
