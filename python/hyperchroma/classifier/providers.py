"""Execution providers for ONNX Runtime: CUDA only when it actually works here, chosen without printing.

:func:`cuda_status` probes once (driver, device, the provider's libraries, a tiny session) and caches the
answer; :func:`resolve_providers` turns a user's ``providers=`` argument into what a session is given.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
from typing import Any, Iterator, Union

ProviderArg = Union[str, "tuple[str, dict[str, Any]]"]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
ORT_DEFAULT_LOG_SEVERITY = 2  # onnxruntime's own default (warning)


def load_ort() -> Any:
    import onnxruntime

    return onnxruntime


# --------------------------------------------------------------------------------------- provider probing
def _cuda_device_count() -> int:
    """Number of CUDA devices the driver reports (0 when there is no driver or no device), via ctypes."""
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


@contextlib.contextmanager
def quiet_ort() -> Iterator[None]:
    """Silence onnxruntime's default logger (and Python-level prints of its helpers) for a probe."""
    ort = load_ort()
    ort.set_default_logger_severity(4)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        ort.set_default_logger_severity(ORT_DEFAULT_LOG_SEVERITY)


def _tiny_model_bytes() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return onnx._serialize(model) if hasattr(onnx, "_serialize") else model.SerializeToString()


@functools.lru_cache(maxsize=None)
def cuda_status() -> tuple[bool, str]:
    """``(usable, reason)`` for ONNX Runtime's CUDA execution provider: usable when the installed onnxruntime
    offers it, the CUDA driver loads and reports a device, and a tiny session on it keeps the CUDA provider.
    Probed once, silently (nothing reaches stdout/stderr), and cached."""
    ort = load_ort()
    if CUDA not in ort.get_available_providers():
        return False, "this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
    n = _cuda_device_count()
    if n < 1:
        return False, "no CUDA driver or no CUDA device"
    with quiet_ort():
        try:
            if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels, when installed
                ort.preload_dlls()
        except Exception:  # noqa: BLE001 - a failed preload only means the system paths are used
            pass
        try:
            so = ort.SessionOptions()
            so.log_severity_level = 4
            sess = ort.InferenceSession(_tiny_model_bytes(), so, providers=[CUDA, CPU])
            if sess.get_providers()[0] == CUDA:
                return True, f"{n} CUDA device(s)"
        except Exception:  # noqa: BLE001
            pass
    return False, f"{n} CUDA device(s), but the CUDA provider's libraries (CUDA, cuDNN) do not load"


def cuda_usable() -> bool:
    """Whether ONNX Runtime's CUDA execution provider actually works here (see :func:`cuda_status`)."""
    return cuda_status()[0]


def available_providers() -> list[str]:
    """Execution providers usable here, best first: ``CUDAExecutionProvider`` only when :func:`cuda_usable`."""
    ort = load_ort()
    out = [CUDA] if cuda_usable() else []
    return out + [p for p in ort.get_available_providers() if p not in (CUDA, "TensorrtExecutionProvider")]


_ALIASES = {"cpu": CPU, "cuda": CUDA, "gpu": CUDA, "tensorrt": "TensorrtExecutionProvider"}


def resolve_providers(providers: Any) -> list[Any]:
    """Explicit providers: names (or aliases cpu/cuda), or (name, options) pairs. Unusable ones are dropped when a
    later one can run; when none can, a ValueError names what is available."""
    if providers is None:
        return [(CUDA, {}), CPU] if cuda_usable() else [CPU]
    if isinstance(providers, (str, tuple)):
        providers = [providers]
    ort = load_ort()
    have = set(ort.get_available_providers())
    out: list[Any] = []
    for p in providers:
        name, opts = (p[0], dict(p[1])) if isinstance(p, tuple) else (p, None)
        if not isinstance(name, str):
            raise TypeError(f"providers: expected names like 'CPUExecutionProvider' or (name, options), got {p!r}")
        name = _ALIASES.get(name.lower(), name)
        usable = name in have and (name not in (CUDA, "TensorrtExecutionProvider") or cuda_usable())
        if usable:
            out.append((name, opts) if opts is not None else name)
    if not out:
        raise ValueError(
            f"none of the requested execution providers {list(providers)!r} is usable here "
            f"(usable: {available_providers()})"
        )
    return out

