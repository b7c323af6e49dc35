"""The supervisor: the run's lifecycle. It starts everything in one place, watches every long-lived task,
and stops everything in one place, with the exit code the run came to.

Data flows one way: intake (scan -> store -> queue) -> slot -> job runner (attempts.py: launcher ->
outcome -> store). Its seams are injected: the store engine, the clock, the launcher and the GPU
probe; observers see frozen snapshots (figures.py). Signals are wired by the caller (app.py) to
request_stop/request_reload.

The long-lived tasks each do one thing: dispatch (the job runner), GPU health (its targets applied
by gpu_targets.py), the upkeep (upkeep.py: housekeeping, lease renewals, takeovers on a shared
store, the queue report), the watchdog (watchdog.py), the videos share's probe and rescans; each
owns its state. Every way the run ends drains through shutdown.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from supervisor.clock import Clock, LoopClock
from supervisor.config import Settings
from supervisor.gpu.monitor import NO_DRIVER_WARNING, GpuMonitor, open_probe
from supervisor.gpu.policy import PolicyConfig
from supervisor.gpu.probe import GpuProbe
from supervisor.jobs.contract import JobStoreEngine
from supervisor.jobs.model import StoreError, Takeover
from supervisor.jobs.retrying import RETRY_FIRST_SECONDS, RETRY_LONGEST_SECONDS, RetryingStore
from supervisor.observe.notify import Notifier
from supervisor.observe.observers import Observer, Observers
from supervisor.observe.stats import RunStats
from supervisor.process.launcher import Launcher, ProcessLauncher
from supervisor.process.orphans import OrphanReaper
from supervisor.process.runner import Outcome, OutcomeKind
from supervisor.protocol import EX_CONFIG, EX_FAILED, EX_OK, EX_SOFTWARE
from supervisor.scheduling.attempts import JobRunner
from supervisor.scheduling.figures import RunFigures
from supervisor.scheduling.gpu_memory import MemoryAdmission
from supervisor.scheduling.gpu_targets import GpuTargets
from supervisor.scheduling.intake import Intake
from supervisor.scheduling.leases import ClaimRenewer
from supervisor.scheduling.pausing import CriticalPause
from supervisor.scheduling.queue import JobQueue
from supervisor.scheduling.running import RunningJob
from supervisor.scheduling.share import ShareWatch
from supervisor.scheduling.shutdown import Shutdown
from supervisor.scheduling.slots import GpuId, SlotPool
from supervisor.scheduling.takeover import Takeovers
from supervisor.scheduling.upkeep import Upkeep
from supervisor.scheduling.watchdog import Watchdog

log = structlog.get_logger("supervisor")

STORE_RETRY_FIRST = RETRY_FIRST_SECONDS
STORE_RETRY_MAX = RETRY_LONGEST_SECONDS
# A scan of the videos folder still running after this long is stuck (a hung network share): the
# watchdog is no longer fed, so systemd restarts the daemon, loudly.
SCAN_STUCK_SECONDS = 900.0
EX_INTERRUPTED = 130


class Supervisor:
    """Runs jobs for every discovered video until done (once) or until told to stop (daemon)."""

    def __init__(self, settings: Settings, store: JobStoreEngine, *, daemon: bool = False,
                 probe: GpuProbe | None = None, probe_warning: str | None = None,
                 clock: Clock | None = None, launcher: Launcher | None = None, notifier: Notifier | None = None,
                 reload: Callable[[], Settings] | None = None, observers: list[Observer] | None = None,
                 store_retry: tuple[float, float] = (STORE_RETRY_FIRST, STORE_RETRY_MAX),
                 scan_stuck_seconds: float = SCAN_STUCK_SECONDS, orphans: OrphanReaper | None = None) -> None:
        self.store = store
        self.daemon = daemon
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.launcher: Launcher = launcher if launcher is not None else ProcessLauncher()
        self.notifier = notifier if notifier is not None else Notifier("")
        self._reload = reload
        self.observers = Observers(observers or [])
        started_at = self.clock.time()
        if probe is None:
            probe, probe_warning = open_probe(settings.gpu)
        self.probe = probe
        self._probe_warning = probe_warning
        gpus: list[GpuId] = list(probe.indices()) or [None]
        self.memory = MemoryAdmission(lambda: self.settings, lambda: self.runner.admission_view(), self.clock.time)
        self.pausing = CriticalPause(lambda: self.settings, self.clock.monotonic)
        self.slots = SlotPool(gpus, settings.scheduler.max_parallel,
                              admit=self.memory.admits if probe.indices() else None)
        self.monitor = GpuMonitor(
            probe, gpus, PolicyConfig.from_settings(settings.gpu, settings.scheduler.max_parallel),
            poll_seconds=settings.gpu.poll_seconds, snapshot_seconds=settings.gpu.snapshot_seconds,
            slots=lambda: {g: (self.slots.limit(g), self.slots.held(g), self.slots.accepting(g))
                           for g in self.slots.gpus},
            clock=self.clock.monotonic, wall=self.clock.time, sleep=self.clock.sleep,
            on_health_change=self.observers.gpu_health_changed,
        )
        probe.watch_load(lambda: {g: n for g, n in self.slots.held_by_gpu().items() if g is not None})
        self.queue = JobQueue(self.clock)
        self.calls = RetryingStore(store.describe, self.clock, first=store_retry[0], longest=store_retry[1],
                                   on_trouble=self.observers.store_unavailable)
        self.stats = RunStats()
        self._stop = asyncio.Event()  # no new work: a stop request, a fault or a halt
        self._stop_now = asyncio.Event()  # a second stop request: no drain
        self.runner = JobRunner(
            settings=lambda: self.settings, store=store, calls=self.calls, queue=self.queue, slots=self.slots,
            clock=self.clock, launcher=self.launcher, observers=self.observers, stats=self.stats,
            base_env=dict(os.environ), stopping=self._stop.is_set, halt=self.halt, check_idle=self._check_idle,
            crashed=self._task_ended, memory=self.memory if probe.indices() else None, excuse=self._excuse)
        self.takeovers = Takeovers(self.runner)
        self.share = ShareWatch(lambda: self.settings, self.clock, sample=self._share_sample,
                                on_change=self.observers.share_changed)
        self.renewer = ClaimRenewer(store, self.clock, self.runner.running,
                                    lambda: self.settings.scheduler.lease_seconds)
        self.intake = Intake(settings, store, self.queue, self.clock, daemon=daemon, observers=self.observers,
                             enqueue=self.runner.enqueue, store_call=self.calls.call)
        self._idle = asyncio.Event()
        self._stop_requested = False  # by a signal or the embedding program, not by a fault
        self._crash: str | None = None  # a long-lived task died: the daemon drains and exits 70
        self._halt: str | None = None  # a worker found the configuration unusable: exit 78
        self._supervised: dict[asyncio.Task[Any], str] = {}
        self.figures = RunFigures(
            store=store, clock=self.clock, daemon=daemon, started_at=started_at, running=self.running,
            queue=self.queue, slots=self.slots, monitor=self.monitor, memory=self.memory, stats=self.stats,
            intake=self.intake, share=self.share, trouble=lambda: self.calls.trouble)
        self.watchdog = Watchdog(
            settings=lambda: self.settings, clock=self.clock, notifier=self.notifier, faulted=self._faulted,
            scan_stuck=lambda now: self.intake.scan_stuck(now, scan_stuck_seconds),
            poll_seconds=lambda: self.monitor.poll_seconds)
        self.targets = GpuTargets(
            memory=self.memory, share=self.share, slots=self.slots, pausing=self.pausing, clock=self.clock,
            running=self.running, workers=self.runner.pausing_view, all_lost=lambda: self.monitor.all_lost,
            give_up=self._give_up, beat=self.watchdog.beat)
        self.upkeep = Upkeep(
            settings=lambda: self.settings, clock=self.clock, store=store, orphans=orphans, running=self.running,
            queue=self.queue, renewer=self.renewer, takeovers=self.takeovers, figures=self.figures,
            interval=self.watchdog.interval, beat=self.watchdog.beat, tick=self.tick_observers,
            stopping=self._stop.is_set)
        self.shutdown = Shutdown(
            settings=lambda: self.settings, clock=self.clock, store=store, runner=self.runner, queue=self.queue,
            pausing=self.pausing, notifier=self.notifier, observers=self.observers, stats=self.stats,
            orphans=orphans, stopping=self._stop.is_set, hurry=self._stop_now, trouble=lambda: self.calls.trouble)

    @property
    def running(self) -> dict[int, RunningJob]:
        """The attempts under way, by job id (the job runner's)."""
        return self.runner.running

    @property
    def settings(self) -> Settings:
        """The settings in force: intake owns them, since a reload swaps them there."""
        return self.intake.settings

    @property
    def scans(self) -> int:
        return self.intake.scans

    @property
    def reloads(self) -> int:
        return self.intake.reloads

    # --- requests (signal handlers call these; they only record) -----------

    def request_stop(self) -> None:
        self._stop_requested = True
        self._stop_intake()

    def _stop_intake(self) -> None:
        if self._stop.is_set():
            self._stop_now.set()
            self.calls.give_up()
            self.runner.stop_all()
        self._stop.set()

    def request_reload(self) -> None:
        """SIGHUP: re-read the settings and ROI files, then rescan."""
        self.intake.request_reload()

    # --- the front door -----------------------------------------------------

    async def run(self) -> int:
        """Run to completion; returns the process exit code."""
        tasks: dict[asyncio.Task[Any], str] = {}
        try:
            await self._startup()
            with contextlib.suppress(StoreError):  # a broken store: the first heartbeat's check stops the run
                await self.intake.scan_and_queue(reprocess=self.settings.reprocess)
            self._check_idle()
            snapshot = await self.figures.snapshot()
            await self.observers.start(snapshot)
            self.observers.tick(snapshot)
            self.notifier.ready(self.notifier.last_status or None)
            long_lived: list[tuple[str, Awaitable[None]]] = [
                ("dispatch", self.runner.dispatch()), ("queue-report", self.upkeep.report_queue()),
                ("housekeeping", self.upkeep.housekeeping()), ("leases", self.upkeep.leases()),
                ("watchdog", self.watchdog.run()),
            ]
            if self.store.shared:
                long_lived.append(("takeovers", self.upkeep.takeovers()))
            if self.monitor.policies:
                long_lived.append(("gpu-health", self.monitor.run(self.targets.polled)))
            long_lived.append(("share", self.share.run()))
            if self.daemon:
                long_lived.append(("rescan", self._rescan_loop()))
            for name, coro in long_lived:
                tasks[asyncio.ensure_future(coro)] = name
            self._supervised = tasks
            waiters = [asyncio.create_task(self._stop.wait())]
            if not self.daemon:
                waiters.append(asyncio.create_task(self._idle.wait()))
            # Every long-lived task is watched together with the stop request: one that ends is a fault.
            done, _ = await asyncio.wait([*tasks, *waiters], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task in tasks:
                    self._task_ended(task, tasks[task])
            for w in waiters:
                w.cancel()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    try:
                        await t
                    except Exception as exc:  # it ended with an error while we were stopping
                        self._task_ended(t, tasks[t], exc)
            await self.shutdown.run()
            self.probe.close()
            self.runner.close()
            self.share.close()
        return self._exit_code()

    def _exit_code(self) -> int:
        if self._crash is not None:
            return EX_SOFTWARE
        if self._halt is not None:
            return EX_CONFIG
        if self.daemon:
            return EX_OK  # a requested stop of the service is a clean one, whatever the jobs came to
        if self._stop_requested and self.figures.outstanding:
            return EX_INTERRUPTED
        return EX_FAILED if self.stats.dead else EX_OK

    def _task_ended(self, task: asyncio.Task[Any], name: str, exc: BaseException | None = None) -> None:
        """A long-lived task ended on its own: log it once, take no new work, drain, and exit 70."""
        if exc is None and not task.cancelled():
            exc = task.exception()
        if self._crash is not None or (exc is None and self._stop.is_set()):
            return
        error = f"{type(exc).__name__}: {exc}" if exc is not None else "ended unexpectedly"
        log.critical("task_crashed", task=name, error=error, exc_info=exc,
                     action="taking no new work; draining, then exiting 70 so that systemd restarts it")
        self._give_up(f"task {name!r} crashed: {error}")

    def _give_up(self, reason: str, event: str = "", action: str = "") -> None:
        """The daemon cannot go on as it is: no new work, drain, exit 70 (systemd restarts it)."""
        if self._crash is not None:
            return
        self._crash = reason
        if event:
            log.critical(event, reason=reason, action=action)
        self.observers.run_halted(reason)
        self._stop_intake()

    def halt(self, reason: str) -> None:
        """Stop starting jobs for a reason no retry can fix; the run exits 78 once running jobs drain."""
        if self._halt is None:
            self._halt = reason
            log.critical("run_halted", reason=reason, exit_code=EX_CONFIG,
                         action="no new jobs; running ones drain; fix the cause, then start again")
            self.observers.run_halted(reason)
        self._stop_intake()

    async def _startup(self) -> None:
        recovered: list[Takeover] = await self.calls.call("recover_running", self.store.recover_running)
        await self.takeovers.settle_recovered(recovered, enqueue=False)  # the first scan queues the rest
        log.info(
            "supervisor_started", mode="daemon" if self.daemon else "once", pid=os.getpid(),
            videos_dir=str(self.settings.videos_dir), store=self.store.describe,
            max_parallel=self.settings.scheduler.max_parallel, probe=self.probe.name,
            gpus=[g for g in self.slots.gpus if g is not None], recovered_running=len(recovered),
        )
        if self._probe_warning is not None:
            log.warning("gpu_monitoring_unavailable", message=NO_DRIVER_WARNING, reason=self._probe_warning)
        if self.monitor.monitored:
            self.targets.apply(self.monitor.poll_once())  # never start 4 jobs on a GPU that is already hot
        await self.takeovers.fill_people()

    def busy_off_loop(self) -> bool:
        """Whether work it handed to a thread (a store call, a scan, a result read) is still under way: what a
        clock moved by hand waits for before it moves on."""
        return (self.store.in_flight > 0 or self.intake.scan_started is not None or self.runner.reading > 0
                or self.share.probing)

    # --- intake -------------------------------------------------------------

    async def _rescan_loop(self) -> None:
        last_scan = self.clock.monotonic()
        while True:
            await self.intake.next_request(last_scan)
            last_scan = self.clock.monotonic()
            if self.intake.take_reload_request():
                self.notifier.reloading()
                try:
                    new = self.intake.reload(self._reload)
                    if new is not None:
                        self._apply_settings(new)
                    await self.intake.scan_and_queue()
                finally:
                    self.notifier.ready(self.notifier.last_status or None)  # after RELOADING=1, always
            else:
                await self.intake.scan_and_queue()
            self._check_idle()

    def _apply_settings(self, new: Settings) -> None:
        config = PolicyConfig.from_settings(new.gpu, new.scheduler.max_parallel)
        self.targets.apply(self.monitor.reconfigure(config, poll_seconds=new.gpu.poll_seconds,
                                                    snapshot_seconds=new.gpu.snapshot_seconds))

    def _check_idle(self) -> None:
        if not self.queue.outstanding and not self.running:
            self._idle.set()

    # --- what the parts ask of the run --------------------------------------

    async def tick_observers(self) -> None:
        self.observers.tick(await self.figures.snapshot())

    def _faulted(self) -> bool:
        """A long-lived task crashed, or one that is supervised ended: the watchdog is no longer fed."""
        return self._crash is not None or any(t.done() for t in self._supervised)

    def _excuse(self, gpu: GpuId, outcome: Outcome) -> str | None:
        """Why a failed attempt is not the job's: its GPU failed under it, or it timed out on a stalled share."""
        if self.monitor.lost(gpu):
            return f"GPU {gpu} failed under it"
        if outcome.kind is OutcomeKind.TIMED_OUT and self.share.stalled:
            return f"it timed out while the videos share was stalled ({self.share.detail})"
        return None

    def _share_sample(self) -> Path | None:
        """A recording a job reads now: what the share probe times."""
        running = sorted(self.running.values(), key=lambda r: r.started_at)
        return running[-1].job.path if running else None
