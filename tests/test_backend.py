"""Array-library dispatch and the device vocabulary: one table, one resolver."""

import dask.array as dsa
import numpy as np
import pytest
import scipy.fft
import scipy.ndimage
import scipy.special
import torch

from xrfsr_dask import DeviceError, _backend
from xrfsr_dask.cluster import get_client
from xrfsr_dask.phantoms import nmc_volume
from xrfsr_dask.tomo import project, reconstruct


def test_numpy_routines_are_scipys_and_give_its_answers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 10)).astype(np.float32)
    np.testing.assert_array_equal(_backend.function("rfftn", x)(x, axes=(0, 1)), scipy.fft.rfftn(x))
    np.testing.assert_array_equal(_backend.function("fft", x)(x, axis=0), scipy.fft.fft(x, axis=0))
    np.testing.assert_array_equal(_backend.erf(x), scipy.special.erf(x))
    np.testing.assert_array_equal(_backend.function("gaussian_filter", x)(x, sigma=1.5),
                                  scipy.ndimage.gaussian_filter(x, sigma=1.5))
    assert _backend.function("rfftn", x).keywords == {"workers": -1}
    with pytest.raises(KeyError, match=r"no routine 'ifft2' in the dispatch table; it has \['erf', 'fft'"):
        _backend.function("ifft2", x)


def test_a_dask_array_counts_as_the_library_of_its_chunks():
    x = np.ones((4, 4))
    assert _backend.library(dsa.from_array(x, chunks=2), x, 3.0, None) == "numpy"
    assert _backend.array_module(dsa.from_array(x, chunks=2)) is np
    np.testing.assert_array_equal(_backend.to_host(x), x)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", torch.device("cpu")])
def test_the_vocabulary_is_accepted(device):
    assert _backend.parse_device(device) == str(device)


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda:", "cuda:-1", "mps", ""], ids=lambda d: f"device={d!r}")
def test_other_devices_are_refused_with_the_vocabulary(device):
    with pytest.raises(DeviceError, match=r"is not one of 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        _backend.parse_device(device)


def test_resolution_on_this_machine():
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert _backend.gpu_count() == gpus
    assert _backend.resolve_device("cpu") == "cpu"
    assert _backend.resolve_device("auto") == ("cuda" if gpus else "cpu")
    with pytest.raises(DeviceError, match=rf"device='cuda:{gpus}' was requested but torch sees"):
        _backend.resolve_device(f"cuda:{gpus}")
    assert _backend.gpu_index("cuda") == 0 and _backend.gpu_index("cuda:3") == 3
    assert _backend.gpu_annotations("cuda:1") == {"resources": {"GPU": 1}}
    assert _backend.gpu_annotations("cpu") == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals on machines without CUDA")
def test_every_user_of_a_device_refuses_a_missing_gpu_the_same_way():
    series = project(nmc_volume((8, 16, 16), seed=1), angles=np.arange(0.0, 180.0, 20.0))
    message = r"device='cuda' was requested but torch sees no CUDA GPU; pass device='cpu'"
    with pytest.raises(DeviceError, match=message):
        reconstruct(series, device="cuda")
    from xrfsr_dask.tomo import align

    with pytest.raises(DeviceError, match=message):
        align(series, device="cuda", progress=False)
    from xrfsr_dask.model import resolve_device

    with pytest.raises(DeviceError, match=message):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match=message + r".* Or join a GPU cluster"):
        get_client("cuda")
