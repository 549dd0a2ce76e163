"""CPU time per stage, as Beam distribution metrics (microseconds).

In a fused stage a DoFn's `yield` runs the downstream DoFns before it
returns, so timing a whole `process` call would charge a stage for its
consumers' work. `timed_items` times only the production of each item.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterable, Iterator, TypeVar

import apache_beam as beam

NAMESPACE = "fgbg.timing"
T = TypeVar("T")


def stage_timer(stage: str):
    return beam.metrics.Metrics.distribution(NAMESPACE, stage)


@contextlib.contextmanager
def timed(distribution) -> Iterator[None]:
    start = time.perf_counter()
    yield
    distribution.update(int((time.perf_counter() - start) * 1e6))


def timed_items(items: Iterable[T], distribution) -> Iterator[T]:
    """Yield from `items`, charging `distribution` only for making each one."""
    iterator = iter(items)
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            distribution.update(int((time.perf_counter() - start) * 1e6))
            return
        distribution.update(int((time.perf_counter() - start) * 1e6))
        yield item
