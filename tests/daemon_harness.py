"""Drive the real daemon as a subprocess: its stdout JSON lines, a notify socket, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.fakes import cli, cli_env


def daemon_settings(tmp: Path, *, job_seconds: float = 0.1, extra: str = "", drain: float = 5.0,
                    rescan: float = 3600.0) -> Path:
    cmd = ["{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}", "--out", "{out}",
           "--seconds", str(job_seconds), "--record", str(tmp / "runs.jsonl")]
    p = tmp / "vs.toml"
    p.write_text(
        'videos_dir = "videos"\noutput_dir = "results"\nstate_db = "state/jobs.sqlite3"\nlog_dir = "logs"\n'
        f"allow_root = true\n{extra}\n"
        f"[scheduler]\nmax_parallel = 2\nrescan_seconds = {rescan}\ndrain_seconds = {drain}\n"
        "[discovery]\nsettle_seconds = 0\n[gpu]\nprobe = \"none\"\n"
        f"[worker]\ncommand = {json.dumps(cmd)}\nstop_grace_seconds = 1.0\nretry_backoff_seconds = 0.1\n"
    )
    (tmp / "videos").mkdir(exist_ok=True)
    return p


def set_worker_command(settings: Path, command: list[str]) -> Path:
    """Swap the `[worker] command` line of a settings file written by `daemon_settings`."""
    text = settings.read_text()
    start = text.index("command = ")
    settings.write_text(text[:start] + f"command = {json.dumps(command)}" + text[text.index("\n", start):])
    return settings


class NotifySocket:
    """A datagram socket standing in for systemd's; collects what the daemon sends."""

    def __init__(self, path: Path | None = None, abstract: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            self.sock.bind("\0" + abstract)
            self.address = "@" + abstract
        else:
            assert path is not None
            self.sock.bind(str(path))
            self.address = str(path)
        self.sock.settimeout(0.1)
        self.messages: list[dict[str, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)

    def wait_for(self, key: str, value: str | None = None, timeout: float = 20.0, after: int = 0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages[after:]:
                if key in m and (value is None or m[key] == value):
                    return m
            time.sleep(0.02)
        raise AssertionError(f"no {key}={value} from the daemon in {timeout}s; got {self.messages}")

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


class Daemon:
    def __init__(self, settings: Path, *, env: dict[str, str] | None = None, loop: str = "auto",
                 args: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [*cli("--settings", str(settings), "--daemon", "--loop", loop), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(**(env or {})),
        )
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            text = line.strip()
            if text.startswith("<") and ">" in text[:4]:
                text = text[text.index(">") + 1:]
            try:
                self.events.append(json.loads(text))
            except ValueError:
                continue

    def count(self, event: str) -> int:
        return sum(1 for e in self.events if e.get("event") == event)

    def wait_for(self, event: str, n: int = 1, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events if e.get("event") == event
                     and all(e.get(k) == v for k, v in match.items())]
            if len(found) >= n:
                return found[n - 1]
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no {n}x {event} {match} within {timeout}s; stderr: {self.stderr_text()}\n"
                             f"events: {[e.get('event') for e in self.events]}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def stderr_text(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def children(pid: int) -> list[int]:
    """The pids of a process's children now (none once it is gone)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]
