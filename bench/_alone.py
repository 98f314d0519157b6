"""The store's part of `samtal import` into SQLite alone, for `ingest.py --ceiling`: a file's
batches decoded first, then stored one after another in this process, where nothing else
runs. Prints the seconds the storing took.

SQLite takes one writer, so the import stores its batches one after another too; what it adds
to this is the reading, the decoding (in a process of its own) and the hand-over of each
batch. So this is the fastest the import can be with what it stores today, and its ratio to a
floor is the import's ceiling against that floor. (PostgreSQL's import stores several batches
at once: this would not be its ceiling.)

    python bench/_alone.py DATABASE_URL FILE
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

from samtal.events import decode_batch
from samtal.ingest import IMPORT_BATCH_ONE_WRITER, store_decoded
from samtal.store import open_store


def main() -> None:
    url, path = sys.argv[1], Path(sys.argv[2])
    lines = path.read_bytes().splitlines(keepends=True)
    batches = [
        decode_batch(lines[at : at + IMPORT_BATCH_ONE_WRITER], first_line=at + 1)
        for at in range(0, len(lines), IMPORT_BATCH_ONE_WRITER)
    ]
    del lines
    # The decoded batches live to the end: out of the collector's way, as the import's are
    # (there, each batch is gone once stored).
    gc.collect()
    gc.freeze()
    store = open_store(url, reads=False)
    try:
        began = time.perf_counter()
        for decoded in batches:
            store_decoded(store, decoded, now=time.time_ns() // 1000, bounds=None)
        elapsed = time.perf_counter() - began
    finally:
        store.close()
    print(elapsed)


if __name__ == "__main__":
    main()
