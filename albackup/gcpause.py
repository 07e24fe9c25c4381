"""The cyclic garbage collector held off while rows stream.

A dump or a load makes a Python object per row (and, on most paths, per value) and frees them by
reference counting a batch later. CPython's cyclic collector does not know they die so young: it
runs every 700 allocations and walks every live container of the young generation, the batch
lists of thousands of rows included, and promotes the batches still in flight so that the older
generations are walked too. On the MariaDB dump that was about a tenth of the client's CPU, for
nothing: the data path makes no reference cycles per row or per batch.

:func:`gc_paused` turns the collector off for one unit of work (a chunk dumped, a chunk loaded,
a table read back) and runs one young-generation collection at its end, so the few cycles a unit
can leave (a failed batch's traceback, a helper thread's bookkeeping) are freed per unit and
memory stays bounded however many units a run has.
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside the block; one of the young generations when it ends. Nested
    blocks and a collector turned off by the caller are left as they are."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(1)
