"""sd_notify for systemd Type=notify services: never raises, a no-op without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Sends `KEY=value` datagrams to systemd's notification socket."""

    def __init__(self, address: str | None = None, *, watchdog_usec: str | None = None,
                 watchdog_pid: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self._address: str | bytes | None = None
        if address:
            # A leading '@' names a socket in the abstract namespace.
            self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        usec = os.environ.get("WATCHDOG_USEC") if watchdog_usec is None else watchdog_usec
        pid = os.environ.get("WATCHDOG_PID") if watchdog_pid is None else watchdog_pid
        self.watchdog_seconds: float | None = None
        try:
            if usec and int(usec) > 0 and (not pid or int(pid) == os.getpid()):
                self.watchdog_seconds = int(usec) / 1e6
        except ValueError:
            self.watchdog_seconds = None
        self.last_status = ""

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> bool:
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self._address)
            return True
        except OSError:
            return False

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        if text != self.last_status:
            self.last_status = text
            self.send(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
