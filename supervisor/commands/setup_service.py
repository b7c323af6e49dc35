"""`video-supervisor setup-service [--root DIR]`: install this program as a systemd service.

    sudo /opt/video-supervisor/bin/video-supervisor setup-service --model models/person.pt
    video-supervisor setup-service --root /tmp/stage --model yolo11s.pt     (stage into a folder)

Writes, from the files shipped inside the program (`video-supervisor files`):
- /etc/systemd/system/video-supervisor.service, with ExecStart naming this installed program and
  ReadWritePaths= the settings' output_dir;
- /etc/sysusers.d/video-supervisor.conf, then runs systemd-sysusers (the service user);
- /etc/tmpfiles.d/video-supervisor.conf (the results folder), then runs systemd-tmpfiles --create;
- /etc/video-supervisor/video-supervisor.toml and rois.toml, never over one edited since it was
  installed (the shipped one then goes beside it as .dist);
- the model at the settings' worker.model (from --model, with its sidecar and current exports),
  its CPU exports made, and the model checked as a start checks it.
Then prints the systemctl lines to run. `--root DIR` stages all of it under DIR, as
`systemctl --root` and `systemd-sysusers --root` do; nothing outside DIR changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from supervisor.commands.host_files import host_file
from supervisor.commands.model import counted_classes, run_check
from supervisor.config import ConfigError, Settings, load_settings
from supervisor.protocol import EX_CONFIG, EX_OK

UNIT = "video-supervisor.service"
SETTINGS = Path("/etc/video-supervisor/video-supervisor.toml")
ROIS = Path("/etc/video-supervisor/rois.toml")
INSTALLED_RECORD = Path("/etc/video-supervisor/.installed.json")  # what setup-service wrote, by hash
USER = "video-supervisor"
# Where a service cannot reach a program: ProtectHome= hides these, PrivateTmp= replaces these.
UNREACHABLE = (Path("/root"), Path("/home"), Path("/run/user"), Path("/tmp"), Path("/var/tmp"))


class SetupError(Exception):
    """One line naming what stops the set-up and the fix."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Staging:
    """Writes under the root, says each step in one line, and remembers what it installed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.record_path = self.at(INSTALLED_RECORD)
        try:
            self.record: dict[str, str] = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            self.record = {}

    def at(self, path: Path) -> Path:
        return self.root / path.relative_to("/")

    def say(self, text: str) -> None:
        print(text, flush=True)

    def write(self, path: Path, data: bytes, mode: int = 0o644) -> None:
        target = self.at(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        part.write_bytes(data)
        os.chmod(part, mode)
        part.replace(target)

    def install_program_file(self, path: Path, data: bytes) -> None:
        """A file of the program's own (the unit, sysusers, tmpfiles): always the current one."""
        target = self.at(path)
        old = target.read_bytes() if target.is_file() else None
        if old == data:
            self.say(f"unchanged {target}")
            return
        self.write(path, data)
        self.say(f"{'updated' if old is not None else 'installed'} {target}")

    def install_settings_file(self, path: Path, data: bytes, mode: int = 0o644) -> None:
        """A file the site edits: replaced only while it is as installed; else the new one goes beside it."""
        target = self.at(path)
        if target.is_file():
            current = _sha(target.read_bytes())
            if current == _sha(data):
                self.say(f"unchanged {target}")
                return
            if current != self.record.get(str(path)):
                dist = path.with_name(path.name + ".dist")
                self.write(dist, data, mode)
                self.say(f"kept {target} (edited here); the shipped one is {self.at(dist)}")
                return
        self.write(path, data, mode)
        self.record[str(path)] = _sha(data)
        self.write(INSTALLED_RECORD, (json.dumps(self.record, indent=2) + "\n").encode(), 0o644)
        self.say(f"installed {target}")


def program() -> list[str]:
    """This installed program, as the unit's ExecStart names it."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "video-supervisor" and argv0.is_absolute() and argv0.is_file():
        return [str(argv0)]
    beside = Path(sys.executable).parent / "video-supervisor"
    if beside.is_file():
        return [str(beside)]
    return [sys.executable, "-m", "supervisor"]


def render_unit(text: str, exec_start: list[str], output_dir: Path) -> str:
    text = re.sub(r"^ExecStart=\S+ ", f"ExecStart={' '.join(exec_start)} ", text, count=1, flags=re.M)
    return re.sub(r"^ReadWritePaths=.*$", f"ReadWritePaths={output_dir}", text, count=1, flags=re.M)


def render_tmpfiles(text: str, output_dir: Path) -> str:
    return re.sub(r"^(d\s+)/\S+", lambda m: f"{m.group(1)}{output_dir}", text, count=1, flags=re.M)


def starter_rois(text: str) -> str:
    """The ROI format's reference with its examples commented out: no camera is counted by region until the
    site says which (a camera not listed counts the whole frame)."""
    return "".join(line if not line.strip() or line.startswith("#") else f"# {line}"
                   for line in text.splitlines(keepends=True))


def _run(cmd: list[str], what: str) -> None:
    if shutil.which(cmd[0]) is None:
        raise SetupError(f"{cmd[0]} not found: {what} needs systemd (Debian: apt-get install systemd)")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise SetupError(f"{' '.join(cmd)}: {tail}")


def install_model(st: Staging, settings: Settings, source: Path | None) -> Path:
    """The model at worker.model under the root, from `source` with its sidecar and current exports."""
    target = settings.worker.model
    if not target.is_absolute():
        raise SetupError(f"{SETTINGS}: worker.model = {target} is relative; a service needs an absolute path")
    placed = st.at(target)
    if source is not None:
        if not source.is_file():
            raise SetupError(f"--model {source}: no such file")
        if source.resolve() != placed.resolve():
            placed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, placed)
            os.chmod(placed, 0o644)
            for extra in (".json", ".openvino", ".onnxruntime"):
                src, dst = source.with_name(source.name + extra), placed.with_name(placed.name + extra)
                if src.is_dir():
                    shutil.copytree(src, dst, dirs_exist_ok=True)
                elif src.is_file():
                    shutil.copyfile(src, dst)
            st.say(f"installed {placed} (from {source})")
    elif not placed.is_file():
        raise SetupError(f"no model at {placed}: pass --model YOUR_WEIGHTS.pt (`video-supervisor model fetch` "
                         "gets the demo's person model into models/)")
    made = subprocess.run([sys.executable, "-m", "workers.export_model", str(placed)], check=False)
    if made.returncode != 0:
        raise SetupError(f"{placed}: the CPU exports could not be made (exit {made.returncode}); see above")
    verdict = run_check(placed, counted_classes(settings), settings.worker.engine)
    if verdict.get("problem"):
        raise SetupError(str(verdict["problem"]))
    found = verdict.get("counted")
    st.say(f"checked {placed}: counts {', '.join(map(str, found)) if isinstance(found, list) else '?'}")
    return placed


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="video-supervisor setup-service", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--root", type=Path, help="stage everything under this folder instead of /")
    p.add_argument("--model", type=Path, help="the detector weights to install at the settings' worker.model")
    args = p.parse_args(argv)
    root = (args.root or Path("/")).absolute()
    if args.root is None and os.geteuid() != 0:
        print("video-supervisor setup-service: installing a service needs root: run it with sudo, or stage it "
              "with --root DIR", file=sys.stderr)
        return 1
    exec_start = program()
    where = Path(exec_start[0])
    if any(where == d or d in where.parents for d in UNREACHABLE):
        why = (f"{where}: the service cannot run a program there (ProtectHome= and PrivateTmp= hide it); install "
               "it into its own virtual environment, e.g. /opt/video-supervisor (README, \"Run it as a service\")")
        if args.root is None:
            print(f"video-supervisor setup-service: {why}", file=sys.stderr)
            return EX_CONFIG
        print(f"warning: {why}", flush=True)  # staged for another host, where it may lie elsewhere
    st = Staging(root)
    try:
        st.install_settings_file(SETTINGS, host_file("systemd/video-supervisor.toml").read_bytes())
        st.install_settings_file(ROIS, starter_rois(host_file("etc/rois.toml").read_text()).encode())
        try:
            settings = load_settings(st.at(SETTINGS))
        except ConfigError as exc:
            raise SetupError(str(exc)) from None
        output_dir = settings.output_dir
        unit = render_unit(host_file(f"systemd/{UNIT}").read_text(), exec_start, output_dir)
        st.install_program_file(Path("/etc/systemd/system") / UNIT, unit.encode())
        st.install_program_file(Path("/etc/sysusers.d/video-supervisor.conf"),
                                host_file("systemd/video-supervisor.sysusers.conf").read_bytes())
        tmpfiles = render_tmpfiles(host_file("systemd/video-supervisor.tmpfiles.conf").read_text(), output_dir)
        st.install_program_file(Path("/etc/tmpfiles.d/video-supervisor.conf"), tmpfiles.encode())
        root_flag = [f"--root={root}"] if args.root is not None else []
        _run(["systemd-sysusers", *root_flag], "making the service user")
        st.say(f"user {USER}: made by systemd-sysusers")
        _run(["systemd-tmpfiles", "--create", *root_flag, str(st.at(Path("/etc/tmpfiles.d/video-supervisor.conf")))],
             "making the results folder")
        st.say(f"folder {st.at(output_dir)}: made, owned by {USER}")
        install_model(st, settings, args.model)
        if not st.at(settings.videos_dir).is_dir():
            st.say(f"note: videos_dir {settings.videos_dir} is not there yet: set it in {st.at(SETTINGS)} and give "
                   f"{USER} read access (e.g. usermod -aG cameras {USER})")
    except SetupError as exc:
        print(f"video-supervisor setup-service: {exc}", file=sys.stderr)
        return EX_CONFIG
    except OSError as exc:
        print(f"video-supervisor setup-service: {exc.filename or root}: {exc.strerror or exc}", file=sys.stderr)
        return EX_CONFIG
    systemctl = "systemctl" if args.root is None else f"systemctl --root={root}"
    st.say("\nnow run:" if args.root is None else f"\nstaged under {root}; on the host, after copying it there:")
    if args.root is None:
        st.say(f"  {systemctl} daemon-reload")
        st.say(f"  {systemctl} enable --now video-supervisor")
    else:
        st.say(f"  {systemctl} enable video-supervisor")
    return EX_OK
