"""Array backends: NumPy on the CPU, CuPy on a CUDA GPU, chosen by ``device=``.

This module is the only place that picks the array module. GPU code paths are written
against it (``xp``) so that their logic also runs with NumPy: :func:`emulated_gpu` makes
``device="gpu"`` resolve to NumPy, which is how the tests exercise the GPU paths on a
machine without one (the ``gpu``-marked tests run the same checks on CuPy).
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

DEVICES = ("cpu", "gpu", "auto")


class DeviceError(RuntimeError):
    """Raised when a device is asked for that this machine cannot provide."""


@functools.lru_cache(maxsize=1)
def _cupy_status() -> tuple[object | None, str]:
    try:
        import cupy  # noqa: PLC0415
    except ImportError as exc:
        return None, f"CuPy is not installed ({exc}); install it with `pip install 'mflib[gpu]'`"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken: report, don't hide
        return None, f"CuPy is installed but CUDA is unavailable: {exc}"
    if n < 1:
        return None, "CuPy is installed but no CUDA GPU is visible"
    return cupy, ""


_emulation = {"on": False}


@contextlib.contextmanager
def emulated_gpu():
    """Within the block, ``device="gpu"`` runs the GPU code paths with NumPy as the array
    module (for tests on machines without a GPU; nothing is faster)."""
    before = _emulation["on"]
    _emulation["on"] = True
    try:
        yield
    finally:
        _emulation["on"] = before


def gpu_available() -> bool:
    """True when CuPy imports and at least one CUDA device is visible (or emulated)."""
    return _emulation["on"] or _cupy_status()[0] is not None


def gpu_unavailable_reason() -> str:
    return _cupy_status()[1]


def resolve_device(device: str, supported=("cpu", "gpu"), owner: str = "") -> str:
    """Map ``"auto"`` to ``"gpu"`` or ``"cpu"``; refuse ``"gpu"`` without a GPU.

    ``supported`` lists the devices the caller (``owner``, an estimator's name) has a
    path for: ``"auto"`` then picks the GPU only when it is supported and present, and
    an explicit ``"gpu"`` for a CPU-only estimator is refused by name.
    """
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {DEVICES}")
    if device == "auto":
        return "gpu" if "gpu" in supported and gpu_available() else "cpu"
    if device not in supported:
        raise ValueError(f"{owner or 'this estimator'} has no {device.upper()} path "
                         f"(device={device!r}); use device='cpu' or 'auto'")
    if device == "gpu" and not gpu_available():
        raise DeviceError(
            f"device='gpu' was requested but {gpu_unavailable_reason()}. "
            "Use device='cpu' (or 'auto' to pick the GPU only when present)."
        )
    return device


def get_namespace(device: str):
    """The array module (numpy or cupy) for a resolved device name."""
    if resolve_device(device) == "gpu" and not _emulation["on"]:
        return _cupy_status()[0]
    return np


def array_module(array):
    """``numpy`` or ``cupy``, whichever ``array`` belongs to."""
    if isinstance(array, np.ndarray):
        return np
    return __import__(type(array).__module__.split(".")[0])


def scatter_add(array, index, values) -> None:
    """``array[index] += values`` with repeated indices summed (``np.add.at`` on the CPU,
    ``cupyx.scatter_add`` on the GPU)."""
    if isinstance(array, np.ndarray):
        np.add.at(array, index, values)
        return
    import cupyx  # noqa: PLC0415

    cupyx.scatter_add(array, index, values)


def to_numpy(array):
    """Return a NumPy array whether ``array`` lives on the host or on a GPU."""
    if array is None or isinstance(array, np.ndarray):
        return array
    get = getattr(array, "get", None)
    if callable(get):
        return get()
    return np.asarray(array)


def to_device(array, xp):
    """Move a NumPy array to the namespace ``xp`` (no copy when already there)."""
    if array is None or xp is np:
        return to_numpy(array)
    return xp.asarray(array)
