"""Training pairs: physics of the pair, determinism, disjoint splits, settings checks."""

import numpy as np
import pytest

from xrfsr_dask import nmc_particle
from xrfsr_dask.model import DataSettings, PairSource, map_scale
from xrfsr_dask.model.data import SPLIT_OFFSETS

SMALL = DataSettings(phantom_shape=(160, 160), steps_nm=(20.0, 40.0), patch=8, train_seeds=2,
                     validation_seeds=1, test_seeds=1, validation_patches=8, test_patches=8)


def test_truth_and_scan_carry_the_same_counts():
    # The blur and the sampling conserve counts, so over many patches the mean
    # LR value equals the mean of the truth on the finer grid.
    lr, truth = PairSource(SMALL, "train").batch(np.random.default_rng(0), 64)
    assert lr.shape == (64, 1, 8, 8) and truth.shape == (64, 1, 16, 16)
    assert abs(lr.mean() / truth.mean() - 1) < 0.05


def test_one_scan_has_the_drawn_grid():
    lr, truth, drawn = PairSource(SMALL, "train").scan(np.random.default_rng(4))
    assert truth.shape[-2:] == tuple(2 * n for n in lr.shape[-2:])
    assert lr.shape[-1] == 160 * 5 // int(drawn["step_nm"])
    assert drawn["scan_mode"] in ("step", "fly") and 20 <= drawn["probe"][0] <= 80


def test_batches_are_seeded_and_splits_disjoint():
    a = PairSource(SMALL, "train").batch(np.random.default_rng(1), 8)
    b = PairSource(SMALL, "train").batch(np.random.default_rng(1), 8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    seeds = {split: set(PairSource(DataSettings(), split).seeds) for split in SPLIT_OFFSETS}
    assert not (seeds["train"] & seeds["test"]) and not (seeds["train"] & seeds["validation"])
    assert len(seeds["train"]) == 24


def test_user_images_join_the_pool_when_their_pixel_matches():
    image = nmc_particle((160, 160), pixel_nm=5.0, seed=99, elements=["Ni_K"])
    source = PairSource(SMALL, "train", images=[image])
    assert len(source._maps) == 1
    with pytest.raises(ValueError, match="10.0 nm pixel along y.*hr_pixel_nm=5.0"):
        PairSource(SMALL, "train", images=[nmc_particle((64, 64), pixel_nm=10.0)])


def test_settings_are_checked_and_round_trip():
    with pytest.raises(ValueError, match="steps_nm contains 25.0 nm.*multiples of 10.0 nm"):
        DataSettings(steps_nm=(25.0,))
    assert DataSettings.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError, match="patch=48 LR pixels does not fit.*42 LR pixels"):
        DataSettings(patch=48)
    with pytest.raises(ValueError, match="split must be one of"):
        PairSource(SMALL, "holdout")


def test_map_scale_is_the_quantile_of_finite_values_and_one_for_empty_maps():
    maps = np.stack([np.arange(100.0).reshape(10, 10), np.zeros((10, 10))])
    np.testing.assert_allclose(map_scale(maps, 0.5), [49.5, 1.0])
    maps[0, 0, :3] = [np.inf, -np.inf, np.nan]
    np.testing.assert_allclose(map_scale(maps[:1], 0.5), [np.quantile(np.arange(3.0, 100.0), 0.5)])


def test_projection_samples_are_projections_of_a_particle_volume():
    from xrfsr_dask import nmc_volume, project
    from xrfsr_dask.model.data import PROJECTIONS_PER_VOLUME

    settings = DataSettings(sample="projections", families=(("nmc", 1.0),), hr_pixel_nm=10.0,
                            phantom_shape=(48, 64), steps_nm=(20.0, 40.0), patch=8, train_seeds=1,
                            validation_seeds=1, test_seeds=1)
    source = PairSource(settings, "train")
    hr = source._pool(np.random.default_rng(3))
    assert hr.dims == ("element", "y", "x") and hr.shape == (4, 48, 64)
    # The map is one of the projections at the seed's angles of the seed's
    # volume (at twice the pixel), each pixel repeated 2 x 2 onto the HR grid.
    seeded = np.random.default_rng(0)
    volume = nmc_volume((24, 32, 32), voxel_nm=20.0, seed=0, grain_nm=float(seeded.uniform(*settings.grain_nm)))
    angles = np.sort(seeded.uniform(0.0, 180.0, PROJECTIONS_PER_VOLUME))
    projections = project(volume, angles=angles).values
    coarse = hr.values[:, ::2, ::2]
    assert any(np.allclose(coarse, projections[:, k], rtol=1e-6) for k in range(len(angles)))
    np.testing.assert_array_equal(hr.values[:, 1::2, 1::2], coarse)
    assert float(hr.x[1] - hr.x[0]) == 10.0
    lr, truth = source.batch(np.random.default_rng(0), 8)
    assert lr.shape == (8, 1, 8, 8) and truth.shape == (8, 1, 16, 16)
    assert abs(lr.mean() / truth.mean() - 1) < 0.05
    with pytest.raises(ValueError, match="sample must be 'maps', 'projections' or 'mixed'"):
        DataSettings(sample="volumes")


def test_families_are_drawn_by_weight_and_held_out_ones_refused():
    from xrfsr_dask.families import HELD_OUT

    settings = DataSettings(phantom_shape=(96, 96), steps_nm=(20.0, 40.0), patch=8, train_seeds=2,
                            families=(("cell", 3.0), ("targets", 1.0), ("nmc", 0.0)))
    source = PairSource(settings, "train")
    rng = np.random.default_rng(0)
    drawn = [source._pool(rng).attrs["provenance"][0]["parameters"].get("family", "nmc") for _ in range(200)]
    share = drawn.count("cell") / len(drawn)
    assert set(drawn) == {"cell", "targets"} and 0.65 < share < 0.85
    with pytest.raises(ValueError, match=r"held out.*remove them"):
        DataSettings(families=((HELD_OUT[0], 1.0), ("cell", 1.0)))
    with pytest.raises(ValueError, match="families must name some of"):
        DataSettings(families=(("rocks", 1.0),))
    with pytest.raises(ValueError, match="weights must be >= 0 and not all zero"):
        DataSettings(families=(("cell", 0.0),))


def test_family_splits_never_share_a_map():
    settings = DataSettings(phantom_shape=(64, 64), steps_nm=(20.0,), patch=8, train_seeds=2,
                            validation_seeds=2, test_seeds=2, families=(("texture", 1.0),))
    maps = {split: [PairSource(settings, split)._phantom("texture", False, seed).values
                    for seed in PairSource(settings, split).seeds] for split in SPLIT_OFFSETS}
    for a in maps["train"]:
        for b in maps["validation"] + maps["test"]:
            assert not np.allclose(a, b)


def test_mixed_sampling_draws_maps_and_projection_stacks():
    settings = DataSettings(sample="mixed", phantom_shape=(64, 64), steps_nm=(20.0,), patch=8, train_seeds=1,
                            families=(("particles", 1.0),))
    source = PairSource(settings, "train")
    rng = np.random.default_rng(5)
    for _ in range(12):
        source._pool(rng)
    kinds = {projection for _, projection, _ in source._phantoms}
    assert kinds == {False, True}
    single = source._phantoms[("particles", False, 0)].values
    stack = source._phantoms[("particles", True, 0)].values
    assert not np.allclose(single, stack) and stack.std() < single.std()  # many layers average out


def test_the_forward_model_is_randomised_beyond_the_gaussian_probe():
    settings = DataSettings(phantom_shape=(128, 128), steps_nm=(20.0, 40.0), patch=8, train_seeds=2,
                            tails=1.0, dead=1.0, background=(0.05, 0.05), fly_fraction=1.0, row_shift=(0.1, 0.1))
    source = PairSource(settings, "train")
    rng = np.random.default_rng(2)
    scans = [source.scan(rng) for _ in range(6)]
    assert all("tails" in drawn and "dead_pixels" in drawn for _, _, drawn in scans)
    assert sum(drawn["dead_pixels"] for _, _, drawn in scans) >= 6
    assert all(drawn["row_shift_steps"] > 0.03 for _, _, drawn in scans)
    for lr, _, drawn in scans:
        assert (lr == 0).all(axis=0).sum() >= drawn["dead_pixels"]  # dead in every element's map
    truth = scans[0][1]
    # The background is measured counts: it is in the truth as well.
    assert truth.min() > 0
