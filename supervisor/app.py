"""The program's wiring: settings in, a store, logs, observers and the supervisor out; run, then close.

    scan -> store -> queue -> slot -> worker -> store
    (jobs/)  (jobs/) (scheduling/)  (process/)  (jobs/)
                    GPU health (gpu/) sizes the slots; observe/ watches through snapshots.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from supervisor.config import Settings
from supervisor.jobs.connect import open_engine
from supervisor.jobs.model import StoreError, StoreInUse
from supervisor.logs import cleanup_old_logs, configure_logging
from supervisor.observe.alerts import Alerts
from supervisor.observe.metrics import Metrics
from supervisor.observe.notify import Notifier
from supervisor.observe.observers import Observer
from supervisor.observe.progress import ProgressBar
from supervisor.observe.progress import wanted as progress_wanted
from supervisor.observe.status import StatusFile
from supervisor.observe.web import Sources
from supervisor.process.child import live_pids
from supervisor.process.orphans import OrphanReaper, become_subreaper
from supervisor.protocol import EX_CONFIG, EX_TEMPFAIL, EX_USAGE
from supervisor.scheduling.supervisor import Supervisor


def run_async(coro: Coroutine[Any, Any, int], loop: str = "auto") -> int:
    """Run on uvloop when it is installed (or asked for), else on the plain asyncio loop."""
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(sup: Supervisor, early_signals: list[int]) -> int:
    """Run `sup` with the process's signals wired to it: SIGTERM and SIGINT stop it (a second one stops the
    workers too), SIGHUP reloads. Signals that arrived before the loop ran are acted on first, in order."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, sup.request_stop)
    loop.add_signal_handler(signal.SIGHUP, sup.request_reload)
    for signum in early_signals:
        (sup.request_reload if signum == signal.SIGHUP else sup.request_stop)()
    early_signals.clear()
    try:
        return await sup.run()
    finally:
        for sig in (*STOP_SIGNALS, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def run_supervisor(s: Settings, *, daemon: bool, loop: str = "auto",
                   reload: Callable[[], Settings] | None = None, early_signals: list[int] | None = None) -> int:
    """Open the store, the logs and the observers, run the supervisor to its end, and close them all.

    `early_signals` arrived before the loop could handle them (see entry.py); they are acted on first.
    """
    if daemon and os.geteuid() == 0 and not s.allow_root:
        print("video-supervisor: refusing to run the daemon as root; run it as a service user "
              "(`video-supervisor setup-service` installs one), or pass --allow-root",
              file=sys.stderr)
        return EX_USAGE
    if daemon:
        faulthandler.enable()  # a watchdog SIGABRT leaves the hung stack in the journal
    # Results, logs and the store: the owner writes, the group reads, others nothing (0640 in 0750).
    os.umask(0o027)
    sinks = configure_logging(level=s.logging.level, log_dir=s.log_dir,
                              console_full=daemon or s.logging.level.upper() == "DEBUG", cache=True)
    removed = cleanup_old_logs(s.log_dir, s.logging.retention_days)
    if removed:
        structlog.get_logger("supervisor").info("old_logs_removed", count=len(removed))
    notifier = Notifier()
    observers: list[Observer] = [StatusFile(s.status_file, notifier),
                                 Metrics(s.metrics.listen, Sources(s.status_file, s.store_url, s.state_db)),
                                 Alerts(s.alerts)]
    if not daemon and progress_wanted():
        observers.append(ProgressBar())

    async def main() -> int:
        try:
            store = await open_engine(s.store_url or s.state_db, lease_seconds=s.scheduler.lease_seconds)
        except StoreError as exc:  # another scheduler holds it (try again later), or it cannot be used
            print(f"video-supervisor: {exc}", file=sys.stderr)
            return EX_TEMPFAIL if isinstance(exc, StoreInUse) else EX_CONFIG
        try:
            orphans = OrphanReaper(live_pids) if become_subreaper() else None
            sup = Supervisor(s, store, daemon=daemon, notifier=notifier, reload=reload, observers=observers,
                             orphans=orphans)
            return await serve(sup, early_signals or [])
        finally:
            await store.close()

    try:
        return run_async(main(), loop)
    finally:
        notifier.close()
        sinks.close()
