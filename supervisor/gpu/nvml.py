"""NVML probe (pynvml from the nvidia-ml-py distribution): a few microseconds a reading."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from supervisor.gpu.probe import GpuReading, LoadSource, ProbeUnavailable


class NvmlProbe:
    """Initialises NVML once; every reading is optional and an error never escapes `read()`."""

    name = "nvml"

    def __init__(self, indices: Sequence[int] = ()) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise ProbeUnavailable(f"pynvml is not installed ({exc})") from exc
        self._nvml: Any = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise ProbeUnavailable(f"NVML cannot start: {exc}") from exc
        try:
            count = pynvml.nvmlDeviceGetCount()
            wanted = list(indices) if indices else list(range(count))
            missing = [i for i in wanted if i >= count]
            if missing:
                raise ProbeUnavailable(f"GPU index {missing[0]} requested, but only {count} GPU(s) present")
            self._handles = {i: pynvml.nvmlDeviceGetHandleByIndex(i) for i in wanted}
            self._thresholds = {i: self._read_thresholds(h) for i, h in self._handles.items()}
            self._ecc_start = {i: self._ecc_uncorrected(h) for i, h in self._handles.items()}
            self._events = self._register_xid_events()
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise ProbeUnavailable(f"NVML cannot list GPUs: {exc}") from exc
        except ProbeUnavailable:
            pynvml.nvmlShutdown()
            raise
        self._closed = False

    def indices(self) -> list[int]:
        return list(self._handles)

    def _optional(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self._nvml.NVMLError:
            return None

    def _read_thresholds(self, handle: Any) -> tuple[float | None, float | None]:
        n = self._nvml
        slowdown = self._optional(n.nvmlDeviceGetTemperatureThreshold, handle, n.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)
        shutdown = self._optional(n.nvmlDeviceGetTemperatureThreshold, handle, n.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN)
        return slowdown, shutdown

    def _ecc_uncorrected(self, handle: Any) -> int | None:
        n = self._nvml
        value = self._optional(n.nvmlDeviceGetTotalEccErrors, handle, n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                               n.NVML_VOLATILE_ECC)
        return int(value) if value is not None else None

    def _register_xid_events(self) -> Any:
        """An NVML event set for Xid critical errors on every watched GPU, or None where unsupported."""
        n = self._nvml
        try:
            events = n.nvmlEventSetCreate()
        except n.NVMLError:
            return None
        for handle in self._handles.values():
            with contextlib.suppress(n.NVMLError):
                n.nvmlDeviceRegisterEvents(handle, n.nvmlEventTypeXidCriticalError, events)
        return events

    def _xid_faults(self) -> dict[int, str]:
        """Xid critical errors that arrived since the last poll, by GPU index (never waits)."""
        n = self._nvml
        faults: dict[int, str] = {}
        if self._events is None:
            return faults
        while True:
            try:
                data = n.nvmlEventSetWait_v2(self._events, 0)
            except n.NVMLError:
                return faults  # a time-out: nothing more waiting
            index = next((i for i, h in self._handles.items() if h == data.device), None)
            if index is not None:
                faults[index] = f"Xid {int(data.eventData)} critical error"

    def _process_memory(self, handle: Any) -> tuple[tuple[int, float], ...]:
        n = self._nvml
        procs = self._optional(n.nvmlDeviceGetComputeRunningProcesses, handle) or []
        return tuple((int(p.pid), p.usedGpuMemory / 2**20) for p in procs
                     if getattr(p, "usedGpuMemory", None) is not None)

    def _throttle_mask(self, handle: Any) -> int:
        n = self._nvml
        fn = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None) or n.nvmlDeviceGetCurrentClocksThrottleReasons
        value = self._optional(fn, handle)
        return int(value or 0)

    def read(self) -> list[GpuReading]:
        n = self._nvml
        out: list[GpuReading] = []
        xids = self._xid_faults()
        for index, handle in self._handles.items():
            try:
                temperature = float(n.nvmlDeviceGetTemperature(handle, n.NVML_TEMPERATURE_GPU))
            except n.NVMLError as exc:
                lost = isinstance(exc, getattr(n, "NVMLError_GpuIsLost", ()))
                out.append(GpuReading(index=index, error=f"{type(exc).__name__}: {exc}",
                                      fault="GPU is lost (fallen off the bus)" if lost else None))
                continue
            fault = xids.get(index)
            ecc, start = self._ecc_uncorrected(handle), self._ecc_start.get(index)
            if fault is None and ecc is not None and start is not None and ecc > start:
                fault = f"{ecc - start} uncorrectable ECC error(s)"
            util = self._optional(n.nvmlDeviceGetUtilizationRates, handle)
            mem = self._optional(n.nvmlDeviceGetMemoryInfo, handle)
            power = self._optional(n.nvmlDeviceGetPowerUsage, handle)
            power_limit = self._optional(n.nvmlDeviceGetEnforcedPowerLimit, handle)
            slowdown, shutdown = self._thresholds[index]
            out.append(GpuReading(
                index=index,
                temperature=temperature,
                utilization=float(util.gpu) if util is not None else None,
                memory_used_mb=mem.used / 2**20 if mem is not None else None,
                memory_total_mb=mem.total / 2**20 if mem is not None else None,
                power_w=power / 1000.0 if power is not None else None,  # NVML reports milliwatts
                power_limit_w=power_limit / 1000.0 if power_limit is not None else None,
                throttle_mask=self._throttle_mask(handle),
                slowdown_temp=float(slowdown) if slowdown is not None else None,
                shutdown_temp=float(shutdown) if shutdown is not None else None,
                fault=fault,
                process_memory_mb=self._process_memory(handle),
            ))
        return out

    def watch_load(self, load: LoadSource) -> None:
        pass  # readings are what they are, whatever runs

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(self._nvml.NVMLError):
                if self._events is not None:
                    self._nvml.nvmlEventSetFree(self._events)
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
