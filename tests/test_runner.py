from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest

from supervisor.process.runner import OutcomeKind, WorkerRun, classify, describe_exit
from supervisor.scheduling.outcomes import backoff_delay, should_retry
from tests.fakes import make_video, until


@pytest.mark.parametrize(
    ("code", "timed_out", "interrupted", "kind"),
    [
        (0, False, False, OutcomeKind.SUCCEEDED),
        (0, False, True, OutcomeKind.SUCCEEDED),  # it finished before our stop reached it
        (65, False, False, OutcomeKind.BAD_INPUT),
        (75, False, False, OutcomeKind.TRANSIENT),
        (-9, False, False, OutcomeKind.KILLED),
        (1, False, False, OutcomeKind.FAILED),
        (78, False, False, OutcomeKind.BAD_CONFIG),
        (-15, True, False, OutcomeKind.TIMED_OUT),
        (-15, False, True, OutcomeKind.INTERRUPTED),
        (None, False, False, OutcomeKind.SPAWN_FAILED),
    ],
)
def test_exit_codes_classify_the_outcome(code, timed_out, interrupted, kind):
    assert classify(code, timed_out=timed_out, interrupted=interrupted) is kind


@pytest.mark.parametrize(
    ("kind", "attempts", "retry"),
    [
        (OutcomeKind.BAD_INPUT, 1, False),
        (OutcomeKind.BAD_CONFIG, 1, False),
        (OutcomeKind.TRANSIENT, 3, True),
        (OutcomeKind.TRANSIENT, 9, True),
        (OutcomeKind.TRANSIENT, 10, False),
        (OutcomeKind.INTERRUPTED, 50, True),
        (OutcomeKind.KILLED, 2, True),
        (OutcomeKind.KILLED, 3, False),
        (OutcomeKind.FAILED, 1, True),
        (OutcomeKind.FAILED, 3, False),
        (OutcomeKind.TIMED_OUT, 3, False),
    ],
)
def test_retry_decision(kind, attempts, retry):
    assert should_retry(kind, attempts, max_attempts=3, max_transient_attempts=10) is retry


def test_backoff_doubles_and_is_capped():
    assert [backoff_delay(n, 30, 100) for n in range(0, 6)] == [0, 30, 60, 100, 100, 100]
    assert backoff_delay(10_000, 1, 50) == 50


def test_describe_exit_names_signals():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit 3"


def fake(video, *extra: str) -> list[str]:
    return [sys.executable, "-m", "workers.fake", "--video", str(video), *extra]


def run_worker(argv, **kw):
    events: list[dict] = []
    lines: list[str] = []
    run = WorkerRun(argv, env=dict(os.environ), timeout=kw.pop("timeout", 30), stop_grace=kw.pop("grace", 1),
                    on_event=events.append, on_line=lambda stream, text: lines.append(text) if stream == "stdout"
                    else None)
    outcome = asyncio.run(run.run())
    return outcome, events, lines


def test_success_reports_progress_and_the_done_result(tmp_path):
    v = make_video(tmp_path / "cam_20251114_100000.mp4")
    outcome, events, _ = run_worker(fake(v, "--out", str(tmp_path / "out"), "--seconds", "0.05"))
    assert outcome.kind is OutcomeKind.SUCCEEDED and outcome.exit_code == 0
    kinds = [e["event"] for e in events]
    assert kinds.count("progress") == 3 and kinds[-1] == "done"
    assert outcome.done is not None and (outcome.done.output or "").endswith("summary.json")
    assert (tmp_path / "out" / "summary.json").is_file()


def test_failure_keeps_the_stderr_tail_and_a_one_line_message(tmp_path):
    v = make_video(tmp_path / "a.mp4")
    outcome, _, _ = run_worker(fake(v, "--exit", "65"))
    assert outcome.kind is OutcomeKind.BAD_INPUT
    assert outcome.message == "exit 65: fake worker failing on purpose with exit 65"
    assert "failing on purpose" in outcome.stderr_tail


def test_non_json_stdout_is_passed_on_as_lines(tmp_path):
    outcome, events, lines = run_worker(
        [sys.executable, "-c", "print('hello'); print('{not json'); print('{\"event\": \"progress\", \"frame\": 1}')"])
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert lines == ["hello", "{not json"]
    assert events == [{"event": "progress", "frame": 1}]


def test_a_huge_stdout_line_does_not_break_the_reader():
    code = "import sys; sys.stdout.write('x' * (3 << 20) + '\\n'); print('{\"event\": \"progress\", \"frame\": 2}')"
    outcome, events, _ = run_worker([sys.executable, "-c", code])
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert events == [{"event": "progress", "frame": 2}]


def test_timeout_sends_sigterm_then_sigkill_to_the_whole_group(tmp_path):
    v = make_video(tmp_path / "a.mp4")
    outcome, _, _ = run_worker(fake(v, "--seconds", "30", "--ignore-term"), timeout=0.5, grace=0.3)
    # Left alone it would have exited 0 after 30 s; it ignored SIGTERM, so SIGKILL ended it.
    assert outcome.kind is OutcomeKind.TIMED_OUT
    assert outcome.exit_code == -9
    assert outcome.message == "timed out after 0.5s"


def test_request_stop_interrupts_and_is_not_a_failure(tmp_path):
    v = make_video(tmp_path / "a.mp4")

    async def main():
        run = WorkerRun(fake(v, "--seconds", "30"), env=dict(os.environ), timeout=60, stop_grace=2)
        task = asyncio.create_task(run.run())
        await until(lambda: run.pid is not None)
        run.request_stop()  # a stop at any moment of the worker's life is an interruption
        return await task

    outcome = asyncio.run(main())
    assert outcome.kind is OutcomeKind.INTERRUPTED


def test_grandchildren_die_with_the_worker_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    outcome, _, _ = run_worker([sys.executable, "-c", code], timeout=1.0, grace=0.5)
    assert outcome.kind is OutcomeKind.TIMED_OUT
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the worker's child outlived its process group")


def test_the_exit_is_seen_while_a_process_outside_the_group_still_holds_the_output(tmp_path):
    """asyncio's `Process.wait()` would wait for the pipes too; the launcher reports the exit itself."""
    from supervisor.process.child import live_pids, spawn

    pidfile = tmp_path / "holder.pid"
    script = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 120' & echo started; exit 3"

    async def main():
        child = await spawn("/bin/sh", ["-c", script], env={"PATH": os.environ["PATH"]}, limit=1 << 16)
        code = await child.wait()  # the test's own timeout is the cap
        first = await child.stdout.readline()
        still_open = not child.stdout.at_eof()
        child.close()
        return child.pid, code, first, still_open

    pid, code, first, still_open = asyncio.run(main())
    while not pidfile.exists() or not pidfile.read_text().strip():
        time.sleep(0.01)
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    assert code == 3 and first == b"started\n" and still_open
    assert pid not in live_pids()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_start_cancelled_at_any_step_is_a_cancel_and_leaves_no_descriptor_or_child(loop):
    """A stop can cancel a start anywhere between its fork and its readers: the cancel comes out as a
    cancel (not as an error that would charge the job), and nothing started is left open or unreaped."""
    import uvloop

    from supervisor.process.child import live_pids, spawn

    env = {"PATH": os.environ["PATH"]}

    async def main():
        warm = await spawn("/bin/true", [], env=env, limit=1 << 16)  # the loop's own descriptors, opened once
        await warm.wait()
        warm.close()
        await asyncio.sleep(0)
        before = sorted(os.listdir("/proc/self/fd"))
        outcomes = []
        for turns in range(8):  # cancelled after 0, 1, ... turns of the loop
            task = asyncio.ensure_future(spawn("/bin/sleep", ["60"], env=env, limit=1 << 16))
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            try:
                child = await task
            except asyncio.CancelledError:
                outcomes.append("cancelled")
            else:
                outcomes.append("started")
                os.killpg(child.pid, signal.SIGKILL)
                await child.wait()
                child.close()
        await until(lambda: not live_pids())  # every child killed and reaped by its pidfd watch
        for _ in range(5):
            await asyncio.sleep(0)  # the transports' closes land
        return outcomes, before, sorted(os.listdir("/proc/self/fd"))

    outcomes, before, after = (uvloop.run if loop == "uvloop" else asyncio.run)(main())
    assert "cancelled" in outcomes and set(outcomes) <= {"cancelled", "started"}
    assert after == before


def test_a_missing_worker_program_is_a_spawn_failure():
    outcome, _, _ = run_worker(["/nonexistent/worker", "--video", "x"])
    assert outcome.kind is OutcomeKind.SPAWN_FAILED
    assert "cannot start worker" in outcome.message


def test_a_worker_started_after_its_supervisor_died_follows_it_at_once():
    """The parent-death signal is armed by the worker itself; if the supervisor is already gone by then,
    the worker must not run on: the parent check kills it."""
    import subprocess

    code = "from supervisor.protocol.lifeline import die_with_parent; die_with_parent(); print('ran on')"
    env = {**os.environ, "VIDEO_SUPERVISOR_PARENT_PID": "1"}  # not its parent: as if the supervisor were gone
    gone = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert gone.returncode == -signal.SIGKILL and "ran on" not in gone.stdout
    env["VIDEO_SUPERVISOR_PARENT_PID"] = str(os.getpid())  # its real parent: it runs
    kept = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert kept.returncode == 0 and "ran on" in kept.stdout
    by_hand = {k: v for k, v in os.environ.items() if k != "VIDEO_SUPERVISOR_PARENT_PID"}
    alone = subprocess.run([sys.executable, "-c", code], env=by_hand, capture_output=True, text=True, timeout=30)
    assert alone.returncode == 0  # started by hand: left alone
