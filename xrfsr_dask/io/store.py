"""zarr v3 stores at any fsspec URL: the contract, and the old import path of the store jobs.

The jobs live in their own modules: :mod:`xrfsr_dask.io.writing` (:func:`save`,
resume), :mod:`xrfsr_dask.io.reading` (:func:`open_xrf`, :func:`describe`,
:func:`verify`) and :mod:`xrfsr_dask.io.status` (:func:`store_status`), over
the shared plumbing of ``xrfsr_dask.io._zarr``. Every name this module had
is still importable from it.

A store written by :func:`save` holds one array ``counts`` (and its
coordinates) and a marker in the root group's attributes::

    {"xrfsr_dask": {"complete": false, "version": ..., "started": ...}}

``complete`` turns true only after every chunk has landed and been counted,
so a store that a crash, a kill or a full disk interrupted never looks
finished. :func:`open_xrf` refuses such a store with
:class:`~xrfsr_dask.errors.IncompleteStoreError`; ``save(..., resume=True)``
checks the chunks already there (a kill can leave the one being written
torn), writes the missing and torn ones, and then marks the store complete.

Every chunk passes through a zstd compressor and a CRC-32C checksum codec,
so a corrupted chunk fails loudly on read instead of returning wrong counts:
reading it raises :class:`~xrfsr_dask.errors.CorruptChunkError` with its key.
One job writes a store at a time: :func:`save` holds a writer marker beside
the store while it writes, and a second writer is refused with
:class:`~xrfsr_dask.errors.StoreLockedError` (``xrfsr_dask.io._lock``).
:func:`verify` checks every chunk of a store and, with ``repair=True``,
deletes the bad ones and marks the store incomplete, so that re-running the
command that wrote it with ``--resume`` rewrites exactly those.
"""

from __future__ import annotations

from xrfsr_dask.io._zarr import DEFAULT_CHUNKS, MARKER, VERIFY_BATCH, ZSTD_LEVEL, resolve_chunks
from xrfsr_dask.io.reading import VerifyReport, describe, open_xrf, verify
from xrfsr_dask.io.status import StoreStatus, store_status
from xrfsr_dask.io.writing import WriteOptions, WriteSummary, save, write_options

__all__ = [
    "DEFAULT_CHUNKS",
    "MARKER",
    "VERIFY_BATCH",
    "ZSTD_LEVEL",
    "StoreStatus",
    "VerifyReport",
    "WriteOptions",
    "WriteSummary",
    "describe",
    "open_xrf",
    "resolve_chunks",
    "save",
    "store_status",
    "verify",
    "write_options",
]
