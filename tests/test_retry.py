"""`video-supervisor retry`: jobs given up on run again, in the store (both engines), and a running daemon
takes them up at once."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from supervisor.jobs.model import READY_STATES, JobState
from tests.daemon_harness import Daemon, daemon_settings, set_worker_command
from tests.fakes import cli, cli_env, make_video
from tests.test_people import store_pair  # noqa: F401  (both engines' fixture)
from tests.test_store_contract import video


def test_retry_queues_again_with_attempts_from_zero_and_never_a_running_job(store_pair: Any) -> None:  # noqa: F811
    open_engine, _ = store_pair

    async def main() -> tuple[Any, ...]:
        e = await open_engine()
        ids = (await e.sync([video("a.mp4", 1), video("b.mp4", 2), video("c.mp4", 3, camera="bar"),
                             video("d.mp4", 4)], reprocess=False, now=1.0, duration=0)).new
        for jid in ids[:3]:  # three given up on
            job = await e.claim(jid, now=2.0)
            await e.mark_failed(jid, token=job.claim_token, now=3.0, error="exit 65", exit_code=65, retry_at=None)
        running = await e.claim(ids[3], now=4.0)
        only_bar = await e.retry(dead=True, cameras=["bar"])
        by_id = await e.retry([ids[0], running.id])
        flagged = await e.retry_requested()
        again = await e.claim(ids[0], now=5.0)
        after = await e.retry_requested()
        states = {j.id: j for j in await e.jobs()}
        await e.close()
        return ids, only_bar, by_id, flagged, again, after, states

    ids, only_bar, by_id, flagged, again, after, states = asyncio.run(main())
    assert [j.id for j in only_bar] == [ids[2]] and only_bar[0].state is JobState.QUEUED
    assert [j.id for j in by_id] == [ids[0]]  # the running one is left alone
    assert all(j.attempts == 0 for j in [*only_bar, *by_id])
    assert sorted(j.id for j in flagged) == sorted([ids[0], ids[2]])
    assert again.attempts == 1 and [j.id for j in after] == [ids[2]]  # a claim takes the flag off
    assert states[ids[1]].state is JobState.DEAD and states[ids[3]].state is JobState.RUNNING
    assert states[ids[2]].state in READY_STATES


def run_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, env=cli_env(), timeout=60, cwd=tmp)


def test_a_running_daemon_takes_up_what_retry_queued_at_once(tmp_path: Path) -> None:
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    make_video(tmp_path / "videos" / "other" / "other_20251114_100000.mp4")
    settings = set_worker_command(daemon_settings(tmp_path), [
        "{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}", "--out", "{out}",
        "--exit", "65", "--record", str(tmp_path / "runs.jsonl")])
    d = Daemon(settings)
    try:
        d.wait_for("job_dead", n=2, timeout=60)
        assert run_cli(tmp_path, "retry").returncode == 2  # nothing named
        proc = run_cli(tmp_path, "retry", "--settings", str(settings), "--dead", "--camera", "cam")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("queued again: job ") and "(cam)" in lines[0] and len(lines) == 2
        assert lines[-1] == f"the daemon (pid {d.proc.pid}) takes them up now"
        again = d.wait_for("job_dead", n=3, timeout=60)  # it ran again (and failed again: the same worker)
        assert again["camera"] == "cam" and again["attempts"] == 1
        missing = run_cli(tmp_path, "retry", "--settings", str(settings), "4242")
        assert missing.returncode == 1 and "not queued (no such job, or running now): 4242" in missing.stderr
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
    finally:
        d.stop()
    assert sum(1 for line in (tmp_path / "runs.jsonl").read_text().splitlines() if '"cam"' in line) >= 2


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_retry_without_a_daemon_leaves_them_for_the_next_run(tmp_path: Path, engine: str,
                                                             request: pytest.FixtureRequest) -> None:
    make_video(tmp_path / "videos" / "cam" / "cam_20251114_100000.mp4")
    store = request.getfixturevalue("pg_url") if engine == "postgres" else str(tmp_path / "jobs.db")
    settings = set_worker_command(daemon_settings(tmp_path), [
        "{python}", "-m", "workers.fake", "--video", "{video}", "--camera", "{camera}", "--out", "{out}",
        "--exit", "65"])
    first = run_cli(tmp_path, "--settings", str(settings), "--state-db", store)
    assert first.returncode == 1  # a once run with a job given up on
    proc = run_cli(tmp_path, "retry", "--settings", str(settings), "--state-db", store, "--dead")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] in ("no daemon runs here: the next run takes them up",
                                            "schedulers sharing the store take them up at their next scan")
    status = run_cli(tmp_path, "status", "--settings", str(settings), "--state-db", store, "--json")
    assert json.loads(status.stdout)["jobs"]["queued"] == 1
