"""One shared thread pool for the CPU-bound kernels that release the GIL (AES-CTR in ``cryptography``, numpy ufuncs,
gmpy2's list powmods).

Threat model: none of its own — threads share the calling party's memory and never leave its process, so using them
changes no party's view. What runs here must be independent work on disjoint slices whose result does not depend on
scheduling (each caller checks that the parallel result is bit-identical to the sequential one, or documents why the
values differ only in fresh randomness).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = ["usable_cores", "resolve_workers", "run_all", "split", "thread_scratch"]

_MAX_WORKERS = 8
_POOL: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()
_SCRATCH = threading.local()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at most 8."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(count, _MAX_WORKERS))


def resolve_workers(workers: int | None) -> int:
    """``None`` -> the usable cores; otherwise a validated positive count."""
    if workers is None:
        return usable_cores()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    return workers


def split(total: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """``parts`` contiguous non-empty ranges covering [0, total), every inner cut a multiple of ``align``."""
    units = -(-total // align)
    cuts = [min(total, (units * i // parts) * align) for i in range(parts + 1)]
    return [(lo, hi) for lo, hi in zip(cuts, cuts[1:]) if hi > lo]


def run_all(fn: Callable[..., Any], argument_lists: Sequence[tuple]) -> list[Any]:
    """fn(*args) for every tuple, the first in the calling thread and the rest on the shared pool; results in
    order; the first exception is re-raised after every call has finished."""
    global _POOL
    if len(argument_lists) <= 1:
        return [fn(*args) for args in argument_lists]
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=_MAX_WORKERS, thread_name_prefix="privfed")
        pool = _POOL
    jobs = [pool.submit(fn, *args) for args in argument_lists[1:]]
    results, error = [], None
    try:
        results.append(fn(*argument_lists[0]))
    except BaseException as exc:  # noqa: BLE001 - re-raised below once the other slices are done
        error = exc
    for job in jobs:
        try:
            results.append(job.result())
        except BaseException as exc:  # noqa: BLE001
            error = error or exc
    if error is not None:
        raise error
    return results


def thread_scratch(slot: str, nbytes: int) -> np.ndarray:
    """This thread's reused byte buffer named ``slot``, at least ``nbytes`` long (a fresh buffer of a few hundred
    KiB page-faults on every call of a hot kernel). Nothing in it outlives the caller's use: each caller overwrites
    what it reads, and one slot serves one kernel, which never nests in itself."""
    buffers = _SCRATCH.__dict__
    raw = buffers.get(slot)
    if raw is None or raw.size < nbytes:
        raw = buffers[slot] = np.empty(max(nbytes, 1 << 12), dtype=np.uint8)
    return raw
