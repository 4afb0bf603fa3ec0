"""Memory and time probes for cost figures (thesis Tab. 5.1 vRAM, Tab. 5.2 time per epoch).

On CUDA the peak is torch.cuda.max_memory_allocated (reserved reported beside it); on
the CPU it is the process's peak resident set size, labelled "cpu_peak_rss" so it is
never mistaken for accelerator memory. The CPU peak cannot be reset: it covers the
whole process lifetime.
"""

from __future__ import annotations

import resource
import sys
import time

import torch

CUDA_KIND = "cuda_max_memory_allocated"
CPU_KIND = "cpu_peak_rss"


def _device(device: torch.device | str | None) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cpu")


def reset_peak_memory(device: torch.device | str | None = None) -> None:
    """Reset CUDA peak statistics of `device` (a no-op on the CPU)."""
    dev = _device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def cpu_peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def peak_memory(device: torch.device | str | None = None) -> tuple[float, str]:
    """(peak MiB, kind): CUDA max allocated on a CUDA device, else CPU peak RSS."""
    dev = _device(device)
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20, CUDA_KIND
    return cpu_peak_rss_mb(), CPU_KIND


def cuda_peak_reserved_mb(device: torch.device | str) -> float:
    """torch.cuda.max_memory_reserved of `device` in MiB."""
    return torch.cuda.max_memory_reserved(torch.device(device)) / 2**20


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued kernels so wall-clock times include them (no-op on the CPU)."""
    dev = _device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class Timer:
    """Wall-clock timer context; synchronizes `device` on entry and exit when it is CUDA.

    >>> with Timer() as t: ...
    >>> t.seconds
    """

    def __init__(self, device: torch.device | str | None = None):
        self.device = device
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> "Timer":
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start
