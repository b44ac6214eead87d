"""Work spread over the machine's cores, for building a registry's search index.

Workers are forked, so they inherit what the parent set up (the release, a haplotype table,
compiled kernels) instead of loading it again; only the items and results cross processes.
The function given must be importable by name (a module function or a classmethod) and read
its shared state from where the parent put it before calling :func:`ordered_map`. Workers exit
when the parent dies, however it dies.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


def default_workers() -> int:
    """One worker per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def ordered_map(function: Callable[[_T], _R], items: Iterable[_T], workers: int
                ) -> Iterator[_R]:
    """``map`` over forked worker processes, results in order, with at most two items per
    worker in flight, so a registry never sits in memory whole. With one worker (or where
    processes cannot be forked) it runs in this process."""
    if workers <= 1 or "fork" not in mp.get_all_start_methods():
        yield from map(function, items)
        return
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"),
                             initializer=_exit_with, initargs=(os.getpid(),)) as pool:
        pending: deque[Future[_R]] = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _exit_with(parent: int) -> None:
    """In a worker: exit when ``parent`` is gone (killed, even by SIGKILL), rather than wait
    for work that never comes while holding its memory. A watch on the parent's pid works
    whichever thread forked the worker, which PR_SET_PDEATHSIG does not."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
