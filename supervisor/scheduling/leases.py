"""Lease renewals: this scheduler's claims on the jobs it runs, extended well before they run out.

One owner, one task (the supervisor's `leases`), nothing else in it: a slow scan, a store check or a
takeover never delays a renewal, and a renewal waits for the store at most `timeout` seconds (on
the injected clock), so a store that does not answer costs a warning, never the loop. A claim the
store no longer holds for this scheduler was taken over: its worker is killed at once, and nothing
of that attempt is recorded (every write of an attempt is fenced by its claim).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import structlog

from supervisor.clock import Clock
from supervisor.jobs.contract import JobStoreEngine
from supervisor.jobs.model import StoreUnavailable
from supervisor.scheduling.running import RunningJob

log = structlog.get_logger("supervisor")


class ClaimRenewer:
    """Renews the claims of the attempts in `running` (the job runner's table, read only)."""

    def __init__(self, store: JobStoreEngine, clock: Clock, running: Mapping[int, RunningJob],
                 lease_seconds: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._running = running
        self._lease_seconds = lease_seconds
        self._renewals_failing = False  # the store has not taken the last renewal

    async def renew(self, *, timeout: float) -> None:
        """Extend the claims of the attempts under way, waiting at most `timeout` seconds for the store (a store
        that does not answer is asked again next time); stop at once the worker of a claim found lost."""
        claims = {rj.job.id: rj.token for rj in self._running.values() if not rj.lease_lost}
        held: set[int] | None = set()
        error = ""
        if claims:
            renewal = asyncio.ensure_future(self._store.renew(claims))
            deadline = asyncio.ensure_future(self._clock.sleep(timeout))
            try:
                await asyncio.wait({renewal, deadline}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                deadline.cancel()
                answered = renewal.done()
                if not answered:
                    renewal.cancel()
            if not answered:
                held, error = None, f"no answer within {timeout:g} s"
            elif isinstance(renewal.exception(), StoreUnavailable):
                held, error = None, str(renewal.exception())
            else:
                held = renewal.result()
        if held is None:
            if not self._renewals_failing and self._running:  # once an outage: our claims may run out meanwhile
                log.warning("claims_not_renewed", error=error, running=len(self._running),
                            lease_seconds=self._lease_seconds(),
                            action="running jobs go on; if this lasts past the lease, another host may take them")
            self._renewals_failing = True
            return
        if self._renewals_failing:
            self._renewals_failing = False
            log.info("claims_renewed")
        for job_id in claims.keys() - held:
            rj = self._running.get(job_id)
            if rj is None or rj.recording or rj.lease_lost or rj.token != claims[job_id]:
                continue  # finished meanwhile: its own write is fenced
            rj.lease_lost = True
            rj.run.kill_now()
            log.error("lease_lost", job_id=job_id, camera=rj.job.camera, video=str(rj.job.path), token=rj.token,
                      action="its worker was killed at once; the scheduler that took the job over runs it, and "
                             "nothing of this attempt is recorded")
