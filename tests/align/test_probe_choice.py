"""The probes chosen for what their readings tell about the plates (labctl/align/probe_choice.py)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.align import Probes
from labctl.align.probe_choice import greedy_design, informative_probes, probe_information
from labctl.errors import ConfigError
from tests.align.conftest import KEYS


def _pool(design, images, dark_first: bool = True) -> Probes:
    pictures = images[0][:8].copy()
    if dark_first:
        pictures[0] = 0.0  # lights nothing
    return Probes.from_images(design, KEYS[:8], pictures)


def test_greedy_choice_covers_every_parameter_instead_of_the_brightest():
    # three probes that tell much about parameter 0 only, one each about parameters 1 and 2
    information = np.zeros((5, 3, 3))
    information[:3, 0, 0] = 100.0
    information[3, 1, 1] = information[4, 2, 2] = 10.0
    chosen = greedy_design(information, np.ones(3, bool), 3)
    assert {3, 4} <= set(chosen) and len(set(chosen) & {0, 1, 2}) == 1


def test_nuisance_parameters_are_marginalised_not_ignored():
    # probe 0 tells about the plate parameter only along with a nuisance it cannot tell apart
    # from it; probe 1 tells less about the plate parameter, but alone
    information = np.zeros((2, 2, 2))
    information[0] = 50.0 * np.array([[1.0, 1.0], [1.0, 1.0]])
    information[1, 0, 0] = 5.0
    assert greedy_design(information, np.array([True, False]), 1) == [1]


def test_a_dark_probe_is_never_chosen_and_the_choice_beats_the_first_ones(design, images):
    pool = _pool(design, images)
    model = design.model()
    information, plate = probe_information(design, pool, model=model)
    assert np.all(information[0] == 0)
    chosen = informative_probes(design, pool, 3, model=model)
    assert pool.keys[0] not in chosen.keys and len(set(chosen.keys)) == 3
    picked = [pool.keys.index(k) for k in chosen.keys]

    def plate_variance(indices):
        total = np.eye(information.shape[1]) / 30.0**2 + information[indices].sum(axis=0) / 1e-4
        return np.trace(np.linalg.inv(total)[np.ix_(plate, plate)])

    assert plate_variance(picked) < plate_variance([0, 1, 2])
    assert np.array_equal(chosen.images, pool.images[picked])


def test_information_is_relative_to_each_probes_own_light(design, images):
    pool = _pool(design, images, dark_first=False)
    brighter = Probes(pool.keys, pool.images, pool.inputs * 3.0)
    model = design.model()
    a, _ = probe_information(design, pool, model=model)
    b, _ = probe_information(design, brighter, model=model)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6 * np.abs(a).max())


def test_asking_for_more_probes_than_the_pool_holds_says_so(design, images):
    with pytest.raises(ConfigError, match="cannot choose 9 of a pool of 8"):
        informative_probes(design, _pool(design, images), 9, model=design.model())
