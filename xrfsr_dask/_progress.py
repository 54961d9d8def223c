"""Running dask work with visible progress, locally or on a distributed cluster."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import dask

__all__ = ["bar", "compute"]

MIN_INTERVAL_S = 1.0
"""Least time between redraws of a bar: logs and notebooks get a line a second, not ten."""


def bar(iterable: Iterable[Any] | None = None, **options: Any) -> Any:
    """The library's one progress bar: plain-text ``tqdm`` (no widget, so no ``TqdmWarning`` in a notebook
    without ipywidgets), redrawn at most once a second. ``options`` go to ``tqdm`` (``desc``, ``unit``,
    ``total``, ``initial``, ``disable``)."""
    from tqdm import tqdm

    return tqdm(iterable, mininterval=MIN_INTERVAL_S, **options)


_LOCAL_SCHEDULERS = ("threads", "threading", "sync", "synchronous", "single-threaded", "processes", "multiprocessing")


def _client() -> Any | None:
    """The active ``distributed.Client``; ``None`` when there is none, or when a local scheduler was asked for
    (``dask.config.set(scheduler="threads")``: data in this process is then not shipped to the cluster)."""
    if dask.config.get("scheduler", None) in _LOCAL_SCHEDULERS:
        return None
    try:
        from distributed import default_client
    except ImportError:  # distributed is a dependency; guard for slim installs
        return None
    try:
        return default_client()
    except ValueError:
        return None


def compute(tasks: Sequence[Any], *, progress: bool, description: str) -> list[Any]:
    """Compute dask collections, showing progress when asked, with :func:`bar` in every case.

    With an active ``distributed.Client`` the tasks run on its cluster and the
    bar counts them as they finish (the dashboard shows the same); otherwise
    they run on the default local scheduler and the bar follows its tasks.
    """
    if not tasks:
        return []
    client = _client()
    if client is not None:
        futures = client.compute(list(tasks))
        if progress:
            from distributed import as_completed

            for _ in bar(as_completed(futures), total=len(futures), desc=description, unit="result"):
                pass
        return client.gather(futures)
    if not progress:
        return list(dask.compute(*tasks))
    from tqdm import tqdm
    from tqdm.dask import TqdmCallback

    with TqdmCallback(desc=description, unit="task", tqdm_class=tqdm, mininterval=MIN_INTERVAL_S):
        return list(dask.compute(*tasks))
