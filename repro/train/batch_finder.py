"""The largest batch size that fits: grow by doubling, then bisect, catching out-of-memory cleanly.

Thesis Sec. 5.3.1 trains both arms of its mixed-precision comparison at "the maximum possible
batch size for non-mixed precision training" (1 on an RTX 2080 Ti, 5 on an A100). The search
is a pure function of a `fits(batch)` probe that either returns or raises out-of-memory, so it
can be tested on a fake allocator; `cuda_oom_cleanup` frees what a failed CUDA try left behind.
"""
from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from repro.errors import UserError


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, or a RuntimeError saying so (cuDNN / cuBLAS allocation failures)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "cudnn_status_alloc_failed" in text
                                              or "cublas_status_alloc_failed" in text)


def cuda_oom_cleanup() -> None:
    """Drop the failed try's tensors and give the cached blocks back, so the next try starts clean."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


@dataclass
class BatchSearch:
    batch_size: int                      # the largest batch that fitted
    tries: list[tuple[int, bool]] = field(default_factory=list)  # (batch, fitted) in the order tried
    capped: bool = False                 # True: `limit` fitted, the true maximum may be larger

    def as_dict(self) -> dict:
        return {"batch_size": self.batch_size, "tries": [list(t) for t in self.tries], "capped": self.capped}


def largest_batch_that_fits(fits: Callable[[int], object], *, start: int = 1, limit: int = 1024,
                            is_oom: Callable[[BaseException], bool] = is_out_of_memory,
                            cleanup: Callable[[], None] = cuda_oom_cleanup) -> BatchSearch:
    """Double from `start` until a batch does not fit (or `limit` fits), then bisect between the last
    batch that fitted and the first that did not. Exceptions other than out-of-memory propagate."""
    if start < 1 or limit < start:
        raise UserError(f"batch search: need 1 <= start <= limit, got start={start}, limit={limit}")
    tries: list[tuple[int, bool]] = []

    def attempt(b: int) -> bool:
        failed = False
        try:
            fits(b)
        except Exception as exc:  # noqa: BLE001 (re-raised unless it is out-of-memory)
            if not is_oom(exc):
                raise
            failed = True
        # outside the except block: the traceback (and the tensors its frames hold) is gone
        if failed:
            cleanup()
        tries.append((b, not failed))
        return not failed

    if not attempt(start):
        raise UserError(f"batch search: even batch size {start} does not fit in memory; use a smaller network, "
                        "a lower resolution or a larger device")
    good, bad = start, None
    while bad is None:
        if good >= limit:
            return BatchSearch(good, tries, capped=True)
        nxt = min(good * 2, limit)
        if attempt(nxt):
            good = nxt
        else:
            bad = nxt
    while bad - good > 1:  # invariant: good fits, bad does not
        mid = (good + bad) // 2
        if attempt(mid):
            good = mid
        else:
            bad = mid
    return BatchSearch(good, tries)
