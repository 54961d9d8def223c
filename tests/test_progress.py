"""The one progress style: plain tqdm bars, redrawn at most once a second, locally and on a cluster."""

import io

import dask
import dask.array as dsa
import numpy as np
from distributed import Client, LocalCluster

from xrfsr_dask import _progress


def test_local_compute_shows_one_plain_bar(capsys):
    x = dsa.ones((40, 40), chunks=10)
    assert _progress.compute([x.sum()], progress=True, description="summing") == [1600.0]
    err = capsys.readouterr().err
    assert "summing" in err and "100%" in err
    bar = _progress.bar(range(3), desc="d", file=io.StringIO())
    assert bar.mininterval == _progress.MIN_INTERVAL_S == 1.0
    assert type(bar).__module__ == "tqdm.std"  # text, not the notebook widget


def test_cluster_compute_uses_the_same_bar_and_a_local_scheduler_keeps_data_here(capsys):
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster):
        x = dsa.from_array(np.arange(100.0), chunks=10)
        assert _progress.compute([x.sum()], progress=True, description="on the cluster") == [4950.0]
        assert "on the cluster" in capsys.readouterr().err
        assert _progress._client() is not None
        with dask.config.set(scheduler="threads"):
            assert _progress._client() is None
