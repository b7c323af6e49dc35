"""The GPU figures bench/gpu.sh prints (see there). Each part runs on its own and says why it was skipped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "models" / "person.pt"
SECONDS = 30.0
BATCHES = (1, 8, 16)


def nvml_readings() -> int | None:
    """Prints every GPU's readings and temperature thresholds; returns how many GPUs, None without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # no driver: NVMLError_LibraryNotFound and kin
        print(f"skipped: NVML readings and thresholds ({type(exc).__name__}: {exc})")
        return None
    count = pynvml.nvmlDeviceGetCount()
    thresholds = {"shutdown": pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN,
                  "slowdown": pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN,
                  "gpu_max": pynvml.NVML_TEMPERATURE_THRESHOLD_GPU_MAX}
    for i in range(count):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        row: dict[str, Any] = {"gpu": i, "name": _text(pynvml.nvmlDeviceGetName(h))}
        readings = {
            "temperature_c": lambda h=h: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
            "utilization": lambda h=h: pynvml.nvmlDeviceGetUtilizationRates(h).gpu,
            "memory_used_mb": lambda h=h: pynvml.nvmlDeviceGetMemoryInfo(h).used // 2**20,
            "memory_total_mb": lambda h=h: pynvml.nvmlDeviceGetMemoryInfo(h).total // 2**20,
            "power_w": lambda h=h: pynvml.nvmlDeviceGetPowerUsage(h) / 1000,
            "throttle_mask": lambda h=h: hex(pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)),
        }
        for key, call in readings.items():
            try:
                row[key] = call()
            except Exception as exc:  # NotSupported on some cards: each reading is optional
                row[key] = f"n/a ({type(exc).__name__})"
        for name, kind in thresholds.items():
            try:
                row[f"threshold_{name}_c"] = pynvml.nvmlDeviceGetTemperatureThreshold(h, kind)
            except Exception as exc:
                row[f"threshold_{name}_c"] = f"n/a ({type(exc).__name__})"
        print("nvml", json.dumps(row))
    t = time.perf_counter()
    for _ in range(200):
        for i in range(count):
            pynvml.nvmlDeviceGetTemperature(pynvml.nvmlDeviceGetHandleByIndex(i), pynvml.NVML_TEMPERATURE_GPU)
    print(f"nvml: one temperature reading {(time.perf_counter() - t) / 200 / max(count, 1) * 1e6:.0f} us per GPU")
    pynvml.nvmlShutdown()
    return count


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def make_video(folder: Path) -> Path:
    from workers.scenes import Actor, encode_scene, write_scene

    video = folder / "cam" / "cam_20251114_100000.mp4"
    actors = [Actor("man", 0.1, 2, 25), Actor("man", 0.6, 8, 29)]
    if shutil.which("ffmpeg"):
        return encode_scene(video, actors, seconds=SECONDS, fps=25, size=(1920, 1080))
    print("note: no ffmpeg tool: the input is mp4v, not H.264")
    return write_scene(video, actors, seconds=SECONDS, fps=25, size=(1920, 1080))


def worker_runs(video: Path, folder: Path) -> None:
    for batch in BATCHES:
        out = folder / f"batch{batch}"
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "workers.detect", f"--video={video}", "--camera=cam",
                               f"--out={out}", f"--model={MODEL}", "--engine=torch", "--device=cuda:0",
                               f"--batch={batch}"], capture_output=True, text=True, cwd=REPO, timeout=120)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            print(f"worker batch {batch}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
            continue
        s = json.loads((out / "summary.json").read_text())
        tm = s["timing"]
        print(f"worker batch {batch:>2}, half={s['half']}: {tm['video_seconds_per_second']:.1f} video-s/s "
              f"(inference {tm['inference_seconds']:.2f} s, "
              f"waiting for frames {tm['waiting_for_frames_seconds']:.2f} s, "
              f"model load {tm['model_load_seconds']:.2f} s, job {wall:.1f} s); peak GPU memory "
              f"{s.get('gpu_memory', {}).get('max_reserved_mb', '?')} MB reserved, "
              f"{s.get('gpu_memory', {}).get('max_allocated_mb', '?')} MB allocated")


def ramp_up(video: Path, folder: Path) -> None:
    """How a worker's GPU memory grows after its start, from NVML's per-process figures every 0.1 s: its
    peak, and how long it takes to reach 90 % of it (what `gpu.job_memory_mb` and `gpu.memory_ramp_seconds`
    describe)."""
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    proc = subprocess.Popen([sys.executable, "-m", "workers.detect", f"--video={video}", "--camera=cam",
                             f"--out={folder / 'ramp'}", f"--model={MODEL}", "--engine=torch", "--device=cuda:0",
                             "--batch=8"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    started = time.perf_counter()
    trace: list[tuple[float, float]] = []
    while proc.poll() is None and time.perf_counter() - started < 120:
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if p.pid == proc.pid and p.usedGpuMemory is not None:
                trace.append((time.perf_counter() - started, p.usedGpuMemory / 2**20))
        time.sleep(0.1)
    proc.wait(timeout=60)
    pynvml.nvmlShutdown()
    if not trace:
        print("ramp-up: NVML showed no memory for the worker's process (in a container NVML may not see pids)")
        return
    peak = max(mb for _, mb in trace)
    reached = next(t for t, mb in trace if mb >= 0.9 * peak)
    first = trace[0][0]
    print(f"ramp-up, one worker (batch 8, half): GPU memory first seen {first:.1f} s after its start, 90 % of its "
          f"peak {peak:.0f} MB at {reached:.1f} s: gpu.job_memory_mb ~ {peak:.0f}, gpu.memory_ramp_seconds >= "
          f"{reached:.0f}")


def decode_rates(video: Path) -> None:
    import av

    from workers.decode import VideoSource

    started = time.perf_counter()
    source = VideoSource(video)
    n = sum(1 for _ in source.samples(1000.0))
    source.close()
    cpu = time.perf_counter() - started
    print(f"decode, CPU (PyAV, {n} frames converted): {SECONDS / cpu:.0f} video-s/s")
    try:
        from av.codec.hwaccel import HWAccel

        started = time.perf_counter()
        with av.open(str(video), hwaccel=HWAccel(device_type="cuda", allow_software_fallback=False)) as c:
            n = sum(1 for _ in c.decode(video=0))
        hw = time.perf_counter() - started
        print(f"decode, NVDEC (PyAV hwaccel cuda, {n} frames): {SECONDS / hw:.0f} video-s/s "
              f"({cpu / hw:.1f}x the CPU)")
    except Exception as exc:  # no NVDEC in this FFmpeg build, or no device
        print(f"skipped: NVDEC decode ({type(exc).__name__}: {exc})")


def main() -> int:
    started = time.perf_counter()
    gpus = nvml_readings()
    cuda = False
    try:
        import torch

        cuda = torch.cuda.is_available()
        if cuda:
            print(f"cuda: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    except Exception as exc:
        print(f"skipped: CUDA check ({type(exc).__name__}: {exc})")
    if not MODEL.is_file():
        print(f"skipped: worker runs ({MODEL} missing: `make models/person.pt`)")
        return 0
    with tempfile.TemporaryDirectory() as d:
        video = make_video(Path(d))
        decode_rates(video)
        if cuda and gpus:
            worker_runs(video, Path(d))
            ramp_up(video, Path(d))
        else:
            print("skipped: worker runs at batch 1, 8, 16 in half precision and peak GPU memory (no CUDA GPU)")
    print(f"bench/gpu.sh: done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
