"""Memory and time probes for cost figures (thesis Tab. 5.1 vRAM, Tab. 5.2 time per epoch).

On CUDA the peak is torch.cuda.max_memory_allocated (reserved reported beside it); on
the CPU it is the process's peak resident set size, labelled "cpu_peak_rss" so it is
never mistaken for accelerator memory. The CPU peak cannot be reset: it covers the
whole process lifetime.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
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


def _nvml_handle(pynvml, device: torch.device):
    """The NVML handle of a torch CUDA device (by PCI bus id: CUDA_VISIBLE_DEVICES renumbers devices)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        p = torch.cuda.get_device_properties(index)
        return pynvml.nvmlDeviceGetHandleByPciBusId(f"{p.pci_domain_id:08x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0")
    except Exception:  # noqa: BLE001 (older drivers / bindings: fall back to the index)
        return pynvml.nvmlDeviceGetHandleByIndex(index)


class NvmlPeakMemory:
    """Peak device memory as the driver reports it (what `nvidia-smi` shows), polled on a thread.

    Thesis Tab. 5.1 reports "the total vRAM needed"; torch's allocator figures leave out the CUDA
    context and the allocator's fragmentation, NVML does not. `device_mb`: the whole device's used
    memory (other processes included); `process_mb`: this process's share, where the driver
    tells. Both None when pynvml (nvidia-ml-py) is not importable or the device is not CUDA.
    """

    def __init__(self, device: torch.device | str, interval_s: float = 0.05):
        self.device = _device(device)
        self.interval_s = interval_s
        self.device_mb: float | None = None
        self.process_mb: float | None = None
        self.total_mb: float | None = None
        self.unavailable: str | None = None
        self._stop = None
        self._thread = None

    def __enter__(self) -> "NvmlPeakMemory":
        if self.device.type != "cuda":
            self.unavailable = "not a CUDA device"
            return self
        try:
            import pynvml
        except ImportError:
            self.unavailable = "pynvml (nvidia-ml-py) is not installed"
            return self
        pynvml.nvmlInit()
        handle = _nvml_handle(pynvml, self.device)
        pid = os.getpid()
        self.total_mb = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20
        self._stop = threading.Event()

        def poll() -> None:
            while True:
                used = pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
                self.device_mb = max(self.device_mb or 0.0, used)
                try:
                    mine = [p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                            if p.pid == pid and p.usedGpuMemory is not None]
                except pynvml.NVMLError:
                    mine = []
                if mine:
                    self.process_mb = max(self.process_mb or 0.0, sum(mine) / 2**20)
                if self._stop.wait(self.interval_s):
                    return

        self._thread = threading.Thread(target=poll, name="nvml-peak", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            import pynvml

            pynvml.nvmlShutdown()


def cpu_rss_mb() -> float | None:
    """This process's resident set size now, in MiB (Linux /proc/self/statm; None elsewhere)."""
    try:
        pages = int(open("/proc/self/statm").read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class CpuRssPeak:
    """Peak resident memory over a block, polled on a thread: unlike ru_maxrss (the whole process's
    lifetime peak, data loading included) it sees what the block itself adds (a CPU figure)."""

    def __init__(self, interval_s: float = 0.01):
        self.interval_s = interval_s
        self.start_mb: float | None = None
        self.peak_mb: float | None = None
        self._stop = None
        self._thread = None

    def __enter__(self) -> "CpuRssPeak":
        self.start_mb = self.peak_mb = cpu_rss_mb()
        if self.start_mb is None:
            return self
        self._stop = threading.Event()

        def poll() -> None:
            while not self._stop.wait(self.interval_s):
                now = cpu_rss_mb()
                if now is not None and now > self.peak_mb:
                    self.peak_mb = now

        self._thread = threading.Thread(target=poll, name="rss-peak", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            now = cpu_rss_mb()
            if now is not None and now > self.peak_mb:
                self.peak_mb = now
