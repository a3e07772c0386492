"""Settings of a long-running server process (the HTTP process and each compute process) that
make its latency steadier. Both are process-wide by nature; call them once, after loading."""

from __future__ import annotations

import ctypes
import gc
import logging

log = logging.getLogger("mechscope.server")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3     # glibc's mallopt parameters


def settle_garbage_collector() -> None:
    """Move the objects that live as long as the server (model, tokenizer tables, schemas, the app)
    out of the cyclic collector's sight, and let it run less often. Every answer allocates
    thousands of short-lived dicts; with the collector's defaults, its full collections walked the
    whole loaded heap every few requests and stalled all of them, which showed as the tail latency
    of `scripts/bench/server.py` at 8 clients (figures in the commit that added this). Garbage is
    still collected: reference counting frees almost everything at once, and cycles are found a
    little later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Ask glibc's malloc to keep freed blocks (below ``mmap_threshold`` bytes, up to
    ``trim_threshold`` of free heap) for reuse instead of handing them back to the kernel. A pass
    allocates and frees the same megabyte-sized tensors every time; returned to the kernel, each
    comes back as fresh pages that fault in on first touch (`scripts/bench/attribution_batching.py`
    shows the difference). The process keeps its high-water mark of heap. False where the C
    library is not glibc (nothing changes)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and \
            bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    except (OSError, AttributeError):
        log.info("not glibc: malloc left as it is")
        return False
