"""The Prometheus alert rules and the Grafana dashboard shipped in etc/: valid, and about metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from supervisor.observe.metrics import Metrics
from tests.fakes import REPO

RULES = REPO / "etc" / "prometheus" / "video-supervisor-rules.yml"
DASHBOARD = REPO / "etc" / "grafana" / "video-supervisor-dashboard.json"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make test` installs it (Debian: prometheus)")
    return found


def exported() -> set[str]:
    """Every series name the daemon's registry can expose (a counter's with its _total)."""
    return set(Metrics().registry._names_to_collectors)


def metric_names(text: str) -> set[str]:
    return set(re.findall(r"\bvideo_supervisor_[a-z_]+\b", text))


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p["targets"]]


def test_the_alert_rules_pass_promtool_and_name_only_exported_metrics() -> None:
    check = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    names = metric_names(RULES.read_text())
    assert names and names <= exported(), names - exported()
    alerts = set(re.findall(r"alert: (\w+)", RULES.read_text()))
    assert {"VideoSupervisorDeadJobs", "VideoSupervisorGpuCritical", "VideoSupervisorStorePaused",
            "VideoSupervisorStalled", "VideoSupervisorQueueNotDraining"} <= alerts


def test_every_dashboard_query_parses_and_names_only_exported_metrics(tmp_path: Path) -> None:
    queries = dashboard_queries()
    # Each query as a recording rule, for promtool to parse ($__rate_interval is Grafana's, set per panel).
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": q.replace("$__rate_interval", "5m")}
        for i, q in enumerate(queries)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    check = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    names = set().union(*(metric_names(q) for q in queries))
    assert names <= exported(), names - exported()
    # The people and the health an operator looks at first are on it.
    assert {"video_supervisor_person_seconds_total", "video_supervisor_occupied_seconds_total",
            "video_supervisor_gpu_temperature_celsius", "video_supervisor_queue_depth"} <= names
