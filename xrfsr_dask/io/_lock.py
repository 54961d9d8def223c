"""One writer per store: an ownership marker created atomically beside the store.

Before a write starts, ``<store>.writer.json`` is created with exclusive
create semantics (``O_EXCL`` on a file system; ``If-None-Match: *`` on S3), so
of two jobs starting together exactly one gets it. It names the owner (host,
process, start time) and is removed when the write ends, whether it succeeded
or failed. A marker left by a process that was killed is recognised as stale
when its process no longer runs on this host; one left by another host is
only removed on request (:func:`unlock`, ``xrfsr unlock``), because this host
cannot tell whether that job still runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from xrfsr_dask.errors import StoreLockedError

__all__ = ["lock_path", "unlock", "writer_lock"]

SUFFIX = ".writer.json"


def lock_path(root: str) -> str:
    """Where the marker of the store at ``root`` lives (beside it, so replacing the store keeps it)."""
    return root.rstrip("/") + SUFFIX


def _read(fs: Any, path: str) -> dict[str, Any] | None:
    # A listing cached by the file system (s3fs) may predate the marker.
    fs.invalidate_cache(path.rsplit("/", 1)[0])
    try:
        with fs.open(path, "rb") as f:
            return json.loads(f.read().decode())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return {"id": "unreadable", "host": "unknown", "pid": -1, "started": "unknown"}


def _alive_here(holder: Mapping[str, Any]) -> bool:
    """False only when the holder ran on this host and its process is gone."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def _describe(holder: Mapping[str, Any]) -> str:
    return f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"


def _create(fs: Any, path: str, owner: Mapping[str, Any]) -> bool:
    """Create the marker if there is none; True when this call created it."""
    if isinstance(fs, LocalFileSystem):  # the marker comes before the store, whose folders zarr would create
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    try:
        with fs.open(path, "xb") as f:
            f.write(json.dumps(owner).encode())
    except FileExistsError:
        return False
    return True


@contextlib.contextmanager
def writer_lock(fs: Any, root: str, url: str, started: str) -> Iterator[None]:
    """Hold the store at ``root`` for one writer for the duration of the block.

    Raises
    ------
    StoreLockedError
        Another writer holds it (and is not known to be dead).
    """
    path = lock_path(root)
    owner = {"id": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(), "started": started}
    if not _create(fs, path, owner):
        holder = _read(fs, path) or {}
        if _alive_here(holder):
            raise StoreLockedError(
                f"{url} is being written by {_describe(holder)}; two writers would interleave their "
                f"chunks. Wait for that job to end. If it is no longer running (it was killed on "
                f"another machine), remove its marker with `xrfsr unlock {url}` and resume."
            )
        # The holder was killed on this host: take over its marker.
        fs.rm(path)
        if not _create(fs, path, owner):
            raise StoreLockedError(f"{url} was just taken by {_describe(_read(fs, path) or {})}.")
    try:
        yield
    finally:
        current = _read(fs, path)
        if current is not None and current.get("id") == owner["id"]:
            fs.rm(path)


def unlock(url: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Remove the writer marker of the store at ``url``; return what it said (None if there was none).

    Only for a writer known to be gone (killed on another machine): a marker
    of a live job protects its store from a second writer.
    """
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    path = lock_path(root)
    holder = _read(fs, path)
    if holder is not None:
        fs.rm(path)
    return holder
