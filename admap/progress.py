"""Progress bars: one per stage, over the stage's whole work.

A stage that works in chunks or batches (the embedding stage, generation, a scorer's model batches) draws one
bar whose total is every item of the stage and advances it as each chunk or batch finishes, so that tqdm's rate
and ETA cover the whole stage; the libraries it calls per chunk (sentence-transformers' ``encode``, Ray Data)
draw nothing under it. The bar is an argument of whoever advances it, never a global.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm.auto import tqdm

Batch = TypeVar("Batch")


@contextmanager
def stage_bar(
    description: str, total: int, *, unit: str, enabled: bool = True, done: int = 0, cached: int = 0
) -> Iterator[tqdm]:
    """A bar over ``total`` items, closed on exit; ``bar.update(n)`` as ``n`` more finish. Nothing is drawn
    unless ``enabled``.

    ``done`` items were finished before the bar opened, ``cached`` of them read from a cache (shown as
    ``cached=N``): the bar starts at ``done``, and tqdm measures its rate, hence the ETA, on the items the
    stage works through from there, not on the instant ones.
    """
    bar = tqdm(
        total=total,
        initial=done,
        desc=description,
        unit=unit,
        postfix={"cached": cached} if cached else None,
        disable=not enabled,
        dynamic_ncols=True,
    )
    try:
        yield bar
    finally:
        bar.close()


def advancing(batches: Iterable[Batch], bar: tqdm, *, size: Callable[[Batch], int]) -> Iterator[Batch]:
    """``batches`` unchanged, advancing ``bar`` by ``size(batch)`` once the consumer is done with each (when it
    asks for the next), for a loop that is not the caller's own."""
    for batch in batches:
        yield batch
        bar.update(size(batch))
