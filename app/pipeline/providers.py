"""Which ONNX Runtime execution provider to use, decided without waking a missing GPU.

onnxruntime-gpu lists CUDA and TensorRT as "available" even on machines with no NVIDIA GPU and
then logs errors when a session asks for them. So we first check cheaply whether the NVIDIA
driver really answers (libcuda.so.1: cuInit + cuDeviceGetCount) and only then ask for the GPU.
"""

from __future__ import annotations

import ctypes
import functools
import os
import tempfile
from pathlib import Path

import cv2

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
SHORT_NAMES = {CPU: "CPU", CUDA: "CUDA", TENSORRT: "TensorRT"}

# ORT's own log: errors only, so a CPU-only machine prints nothing at all.
ORT_LOG_SEVERITY = 3


@functools.cache
def nvidia_gpu_count() -> int:
    """Number of CUDA devices the driver reports; 0 when there is no usable NVIDIA GPU."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return 0
    if os.name == "posix" and not (Path("/dev/nvidiactl").exists() or Path("/dev/dxg").exists()):
        return 0  # no NVIDIA driver node (nor WSL2's GPU bridge): skip loading libcuda at all
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return 0
    try:
        if lib.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    except (AttributeError, OSError):
        return 0


@functools.cache
def tensorrt_libraries_present() -> bool:
    """TensorRT runtime loadable? Without it the TensorRT provider only logs errors."""
    for name in ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so", "nvinfer.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def trt_cache_dir() -> Path:
    path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sonoguide" / "trt"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home: cache for this session only
        path = Path(tempfile.gettempdir()) / "sonoguide-trt"
        path.mkdir(parents=True, exist_ok=True)
    return path


def provider_plan(request: str) -> tuple[list, str]:
    """Providers to ask ONNX Runtime for, best first, and a note when the request can't be met.

    auto: TensorRT (if its libraries load) then CUDA when a GPU answers, else CPU.
    cuda/tensorrt on a machine without a usable GPU: CPU, with a note saying so.
    """
    import onnxruntime as ort

    request = request.lower()
    if request not in PROVIDER_CHOICES:
        raise ValueError(f"provider must be one of {', '.join(PROVIDER_CHOICES)}, got {request!r}")
    if request == "cpu":
        return [CPU], ""
    available = set(ort.get_available_providers())
    if nvidia_gpu_count() == 0 or CUDA not in available:
        note = "" if request == "auto" else (
            f"{request} requested but no usable NVIDIA GPU/driver was found; running on CPU")
        return [CPU], note
    _preload_cuda_libraries(ort)
    plan: list = []
    if request in ("auto", "tensorrt") and TENSORRT in available and tensorrt_libraries_present():
        # Engines are cached so only the very first start pays TensorRT's build time.
        plan.append((TENSORRT, {"trt_engine_cache_enable": "True",
                                "trt_engine_cache_path": str(trt_cache_dir()),
                                "trt_fp16_enable": "True"}))
    note = ""
    if request == "tensorrt" and not plan:
        note = "TensorRT requested but its libraries are missing; using CUDA"
    plan.append(CUDA)
    plan.append(CPU)
    return plan, note


def _preload_cuda_libraries(ort) -> None:
    """Let ORT find CUDA/cuDNN from the nvidia-* pip wheels when those are installed."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception:  # best effort: a system-wide CUDA install works without it
        pass


def short_name(provider: str) -> str:
    return SHORT_NAMES.get(provider, provider.removesuffix("ExecutionProvider"))


def default_intra_op_threads(cpu_count: int | None = None) -> int:
    """ONNX Runtime threads for a CPU run: 2, or half the cores on big machines (at most 4:
    models of the shipped size stop scaling).

    Measured on the 2-core dev machine with the shipped models on the phantom (machine shared,
    figures noisy): 2 threads gave lower capture-to-overlay latency than 1 in most paired runs,
    although 1 thread is faster for the model alone when other programs load the cores.
    """
    cores = cpu_count or os.cpu_count() or 2
    return max(2, min(4, cores // 2))


def configure_cv2_threads(threads: int = 1) -> None:
    """Process-wide OpenCV thread count.

    The hot path only resizes one ROI and traces a few contours per frame: OpenCV's own thread
    pool costs more in hand-offs than it saves and competes with ONNX Runtime for the cores,
    so the app (CLI and window) sets 1 at start-up.
    """
    cv2.setNumThreads(max(0, int(threads)))
