"""Process-wide settings for long-running workers."""

from __future__ import annotations

import gc

# Young-generation threshold once a worker is running. A batch allocates tens of thousands of
# acyclic objects (dicts, tuples, bytes) that reference counting frees when the batch ends; with
# CPython's default (700) the cycle collector scanned them, and promoted the batch in hand to the
# older generations, dozens of times per batch: 1.9 s of 8 s in a 100k-record route benchmark.
YOUNG_THRESHOLD = 100_000


def settle_heap() -> None:
    """Call once start-up is done: freeze what exists (modules, compiled specs, clients) so no
    collection scans it again, and collect young objects far less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
