from __future__ import annotations

import itertools

import pytest

from supervisor.gpu.policy import Health, HealthPolicy, PolicyConfig
from supervisor.gpu.probe import THROTTLE_HW_SLOWDOWN, THROTTLE_SW_POWER_CAP, THROTTLE_SW_THERMAL, GpuReading

CFG = PolicyConfig(max_parallel=4, warm_parallel=2, critical_parallel=1, temp_warm=70, temp_limit=80,
                   hysteresis=3, min_free_memory_mb=1500, unknown_grace_seconds=30)


def reading(temp=None, **kw) -> GpuReading:
    kw.setdefault("memory_used_mb", 1000)
    kw.setdefault("memory_total_mb", 24000)
    return GpuReading(index=0, temperature=temp, **kw)


@pytest.mark.parametrize(
    ("temp", "health", "limit"),
    [(30, Health.HEALTHY, 4), (69.9, Health.HEALTHY, 4), (70, Health.WARM, 2), (75, Health.WARM, 2),
     (80, Health.WARM, 2), (80.1, Health.CRITICAL, 1), (95, Health.CRITICAL, 1)],
)
def test_temperature_table_from_cold(temp, health, limit):
    d = HealthPolicy(CFG).decide(reading(temp), now=0)
    assert (d.health, d.limit, d.accepting) == (health, limit, True)


def walk(temps, cfg=CFG):
    policy = HealthPolicy(cfg)
    return [(str(d.health), d.limit) for d in (policy.decide(reading(t), now=i) for i, t in enumerate(temps))]


def test_heating_is_followed_at_once():
    assert walk([60, 71, 81]) == [("healthy", 4), ("warm", 2), ("critical", 1)]
    assert walk([60, 90]) == [("healthy", 4), ("critical", 1)]


def test_cooling_needs_the_hysteresis_margin():
    # warm -> healthy only below 70 - 3 = 67; critical -> warm only at or below 80 - 3 = 77.
    assert walk([72, 69, 67.5, 66.9]) == [("warm", 2), ("warm", 2), ("warm", 2), ("healthy", 4)]
    assert walk([85, 79, 77.5, 77, 60]) == [("critical", 1), ("critical", 1), ("critical", 1), ("warm", 2),
                                            ("healthy", 4)]


def test_a_gpu_sitting_on_a_threshold_does_not_flap():
    temps = [70 + (0.5 if i % 2 else -0.5) for i in range(40)]
    states = walk(temps)
    changes = sum(1 for a, b in itertools.pairwise(states) if a != b)
    assert changes <= 1


def test_zero_hysteresis_follows_the_raw_table():
    cfg = PolicyConfig(hysteresis=0)
    assert walk([72, 69.9], cfg) == [("warm", 2), ("healthy", 4)]


@pytest.mark.parametrize("mask", [THROTTLE_HW_SLOWDOWN, THROTTLE_SW_THERMAL])
def test_thermal_or_hardware_slowdown_is_critical_whatever_the_temperature(mask):
    d = HealthPolicy(CFG).decide(reading(50, throttle_mask=mask), now=0)
    assert (d.health, d.limit) == (Health.CRITICAL, 1)
    assert "throttled" in d.reason


def test_power_cap_alone_is_not_a_thermal_problem():
    d = HealthPolicy(CFG).decide(reading(50, throttle_mask=THROTTLE_SW_POWER_CAP), now=0)
    assert d.health is Health.HEALTHY


def test_low_free_memory_stops_new_jobs_only():
    d = HealthPolicy(CFG).decide(reading(50, memory_used_mb=23000, memory_total_mb=24000), now=0)
    assert d.health is Health.HEALTHY and d.limit == 4 and d.accepting is False
    assert "1000 MB free" in d.reason
    d = HealthPolicy(CFG).decide(reading(50, memory_used_mb=None), now=0)
    assert d.accepting is True  # unknown memory does not block


def test_unknown_readings_hold_the_last_limit_then_fall_back_to_max_parallel():
    policy = HealthPolicy(CFG)
    assert policy.decide(reading(75), now=0).limit == 2
    held = policy.decide(GpuReading(index=0, error="NVMLError_GpuIsLost: GPU is lost"), now=10)
    assert (held.health, held.limit, held.monitored) == (Health.UNKNOWN, 2, True)
    assert "GPU is lost" in held.reason
    assert policy.decide(None, now=29).limit == 2
    after = policy.decide(None, now=31)
    assert (after.health, after.limit, after.monitored) == (Health.UNKNOWN, 4, False)
    assert "without monitoring" in after.reason
    # Readings return: judged afresh.
    assert policy.decide(reading(85), now=32).limit == 1


def test_limits_never_exceed_max_parallel():
    cfg = PolicyConfig(max_parallel=1, warm_parallel=2, critical_parallel=1)
    assert walk([50, 75, 85], cfg) == [("healthy", 1), ("warm", 1), ("critical", 1)]
