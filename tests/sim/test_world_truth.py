"""The simulated world's hidden errors, each alone, move its readings the way physics says.

Tiny geometries (tests/tiny.py: 40 x 40 neurons, 1 cm gaps). The world's light path
(labctl/sim/light.py) is compared with the twin's model (labctl/optics) only where the two must
agree, and with itself under a symmetry where they need not.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from labctl.optics import D2NN, DetectorLayout, Material
from labctl.sim.clock import Clock
from labctl.sim.light import LightPath, Pose
from labctl.sim.relief import plate_raster, printed_heights, tilted_material
from labctl.sim.truth import PRESETS, Truth, build_world
from tests.tiny import tiny_design, tiny_images

DESIGN = tiny_design()
G = DESIGN.geometry
IMAGES = np.stack([np.pad(im, 6) for im in tiny_images(3)[0]])  # (3, 40, 40) amplitudes on the neuron grid
#: A world where nothing is hidden but what the light path itself does.
NOTHING = replace(PRESETS["ideal"], offset_sigma_m=0.0, backlash_max_m=0.0)


def pose(
    offsets=None, rotations=None, tilts=None, layers: int = G.n_layers, wavelength: float = G.wavelength_m
) -> Pose:
    return Pose(
        np.zeros((layers, 3)) if offsets is None else np.asarray(offsets, float),
        np.zeros(layers) if rotations is None else np.asarray(rotations, float),
        np.zeros((layers, 2)) if tilts is None else np.asarray(tilts, float),
        (True,) * layers,
        wavelength,
    )


def light(design=DESIGN, heights=None, **options) -> LightPath:
    return LightPath(
        design.geometry, design.layout, design.heights_m if heights is None else heights, design.material, **options
    )


def test_at_the_designs_sampling_the_world_computes_what_the_twin_computes():
    offsets = np.array([[0.13e-3, -0.07e-3, 0.2e-3], [-0.31e-3, 0.05e-3, -0.1e-3], [0.0, 0.42e-3, 0.05e-3]])
    world = light().energies(IMAGES, pose(offsets))
    twin = DESIGN.model().energies(IMAGES, DESIGN.heights_m, offsets)
    np.testing.assert_allclose(world, twin, rtol=2e-4)


def test_finer_sampling_differs_from_the_twin_by_the_discretization_only():
    """Measured: detector shares (energy / total) move by 0.041 at most from oversample 1 to 2, and by
    0.006 from 2 to 3 (40 x 40 random plates, 1 cm gaps): 2x is near converged."""
    coarse = light().energies(IMAGES, pose())
    fine = light(oversample=2).energies(IMAGES, pose())
    share = lambda e: e / e.sum(axis=1, keepdims=True)  # noqa: E731
    difference = np.abs(share(fine) - share(coarse)).max()
    assert 1e-4 < difference < 0.05


def test_a_relief_turned_by_90_degrees_is_the_system_turned_the_other_way():
    """Rotating plate 2 by +90 degrees equals rotating every other part (input, plates 1 and 3,
    detectors) by -90 degrees: the square grid and free space have that symmetry."""
    turned = light(oversample=2).energies(IMAGES, pose(rotations=[0.0, math.pi / 2, 0.0]))
    heights = DESIGN.heights_m.copy()
    for j in (0, 2):
        heights[j] = np.rot90(heights[j], 1)
    n = G.n
    r = DESIGN.layout.regions
    regions = np.stack([n - r[:, 3], n - r[:, 2], r[:, 0], r[:, 1]], axis=1)  # each region turned as rot90(., 1)
    design = replace_layout(DESIGN, DetectorLayout(regions, n))
    other = light(design, heights, oversample=2).energies(np.rot90(IMAGES, 1, axes=(1, 2)).copy(), pose())
    np.testing.assert_allclose(turned, other, rtol=1e-4)


def test_a_raster_turned_by_90_degrees_is_the_turned_relief():
    kwargs = dict(
        pitch_m=G.pitch_m, oversample=2, window_neurons=G.n, wavelength_m=G.wavelength_m, material=DESIGN.material
    )
    turned = plate_raster(DESIGN.heights_m[0], rotation_rad=math.pi / 2, **kwargs)
    direct = plate_raster(np.rot90(DESIGN.heights_m[0], -1), **kwargs)  # +x turns towards +y (rows)
    np.testing.assert_allclose(turned, direct, atol=1e-5)


def test_a_small_rotation_moves_the_readings_smoothly():
    path = light(oversample=2)
    angles = np.radians([0.0, 0.1, 0.2, 0.3])
    readings = np.array([path.energies(IMAGES[:1], pose(rotations=[0.0, a, 0.0]))[0] for a in angles])
    steps = np.abs(np.diff(readings, axis=0)).max(axis=1)
    assert steps.min() > 1e-4 * readings.max() and steps.max() < 2 * steps.min()  # no jumps, no dead zones


def test_a_gaussian_beam_carries_pi_w2_over_2_to_the_detector_plane():
    waist = 2e-3
    wide = tiny_design(n=100, layers=1)  # a 4 cm window, 2 cm from input to detectors
    path = light(wide, oversample=2, beam_waist_m=waist, beam_center_m=(1.5e-3, -1.0e-3))
    free = replace(pose(layers=1), mounted=(False,))
    input_power = (np.abs(path.illumination) ** 2).sum() * path.dx**2
    assert input_power == pytest.approx(math.pi * waist**2 / 2, rel=1e-6)
    total = path.detector_plane(np.ones((1, 100, 100), np.float32), free).sum()
    assert total == pytest.approx(math.pi * waist**2 / 2, rel=1e-3)  # free space conserves it


def test_an_off_axis_beam_mirrors_with_the_system():
    """A beam displaced by +c along x through plates mirrored left-right gives the mirrored
    readings of the beam displaced by -c: nothing in the light path prefers a side."""
    c = 2e-3
    right = light(beam_waist_m=8e-3, beam_center_m=(c, 0.0)).energies(IMAGES, pose())
    n = G.n
    r = DESIGN.layout.regions
    mirrored = replace_layout(DESIGN, DetectorLayout(np.stack([r[:, 0], r[:, 1], n - r[:, 3], n - r[:, 2]], 1), n))
    left = light(mirrored, DESIGN.heights_m[:, :, ::-1].copy(), beam_waist_m=8e-3, beam_center_m=(-c, 0.0))
    np.testing.assert_allclose(right, left.energies(IMAGES[:, :, ::-1].copy(), pose()), rtol=1e-4)
    centred = light(beam_waist_m=8e-3).energies(IMAGES, pose())
    assert np.abs(right - centred).max() > 0.01 * centred.max()


def test_a_plate_spacing_error_is_propagation_over_the_longer_distance():
    dz = 0.4e-3
    world = light().energies(IMAGES, pose([[0, 0, dz], [0, 0, 0], [0, 0, 0]]))
    twin = DESIGN.model().energies(IMAGES, DESIGN.heights_m, np.array([[0, 0, dz], [0, 0, 0], [0, 0, 0]]))
    np.testing.assert_allclose(world, twin, rtol=2e-4)
    detector = light(detector_offset_m=np.array([0.0, 0.0, dz])).energies(IMAGES, pose())
    further = D2NN(replace(G, detector_distance_m=G.detector_distance_m + dz), DESIGN.layout, DESIGN.material)
    np.testing.assert_allclose(detector, further.energies(IMAGES, DESIGN.heights_m), rtol=2e-4)


def test_a_height_scale_is_a_phase_scale():
    material = Material.lossless(1.7227)
    scale = 1.03
    printed = printed_heights(DESIGN.heights_m, 0.0, 0.0, scale)
    scaled = LightPath(G, DESIGN.layout, printed, material, oversample=2).energies(IMAGES, pose())
    index = Material.lossless(1.0 + 0.7227 * scale)  # the same phase from the design's heights
    same_phase = LightPath(G, DESIGN.layout, DESIGN.heights_m, index, oversample=2).energies(IMAGES, pose())
    np.testing.assert_allclose(scaled, same_phase, rtol=1e-4)


def test_the_print_is_the_stls_staircase_plus_its_errors():
    step = 16e-6
    printed = printed_heights(DESIGN.heights_m, step)
    assert (
        np.allclose(printed / step, np.round(printed / step))
        and np.abs(printed - DESIGN.heights_m).max() <= step / 2 + 1e-12
    )
    noisy = printed_heights(DESIGN.heights_m, step, np.full(DESIGN.heights_m.shape, -1.0), 1.0)
    assert noisy.min() == 0.0  # no relief below the base


def test_a_tilted_slab_delays_along_its_oblique_path():
    material = Material(1.7, 0.03)
    theta = math.radians(20.0)
    tilted = tilted_material(material, (theta, 0.0))
    refracted = math.asin(math.sin(theta) / 1.7)
    # optical path through a slab of thickness h minus the air path it replaces: h (n cos t_r - cos t) / ...
    expected_delay = 1.7 / math.cos(refracted) - math.cos(theta - refracted) / math.cos(refracted)
    assert tilted.refractive_index - 1.0 == pytest.approx(expected_delay, rel=1e-12)
    assert tilted.extinction == pytest.approx(0.03 / math.cos(refracted))
    assert tilted_material(material, (0.0, 0.0)) is material


def test_a_tilt_foreshortens_the_relief():
    """Tilted by theta about y, a relief of neurons p wide looks p cos(theta) wide along x."""
    heights = np.zeros((G.n, G.n))
    heights[:, 20:] = 0.5e-3  # an edge at x = 0
    heights[:, 30:] = 0.0  # and another at x = 10 p
    kwargs = dict(
        pitch_m=G.pitch_m,
        oversample=4,
        window_neurons=G.n,
        wavelength_m=G.wavelength_m,
        material=Material.lossless(1.7227),
        supersample=8,
    )
    flat = plate_raster(heights, **kwargs)
    theta = math.radians(30.0)
    tilted = plate_raster(heights, tilt_rad=(0.0, theta), **kwargs)
    width = lambda t: np.sum(1.0 - t[G.n * 2].real) / np.max(1.0 - t[G.n * 2].real)  # noqa: E731 (samples under the step)
    assert width(tilted) / width(flat) == pytest.approx(math.cos(theta), rel=0.02)


def test_moving_the_detector_plane_is_moving_every_detector():
    shift = np.array([2 * G.pitch_m, -G.pitch_m])
    plane = light(oversample=2, detector_offset_m=np.array([*shift, 0.0])).energies(IMAGES, pose())
    each = light(oversample=2, detector_errors_m=np.tile(shift, (len(DESIGN.layout), 1))).energies(IMAGES, pose())
    np.testing.assert_allclose(plane, each, rtol=1e-4)
    assert np.abs(plane - light(oversample=2).energies(IMAGES, pose())).max() > 1e-3 * plane.max()


def test_stray_light_adds_a_constant_to_every_reading():
    truth = replace(NOTHING, stray_fraction=0.02)
    with_stray = build_world(DESIGN, clock=Clock(0), seed=3, truth=truth, masks=lambda key: IMAGES[int(key)])
    without = build_world(DESIGN, clock=Clock(0), seed=3, truth=NOTHING, masks=lambda key: IMAGES[int(key)])
    added = with_stray.energies(IMAGES) - without.energies(IMAGES)
    np.testing.assert_allclose(added, np.broadcast_to(added[0], added.shape), atol=1e-12)
    assert np.all(added[0] > 0) and np.all(added[0] <= 0.02 * truth.peak_signal_v)


HIDDEN = {  # each error alone, at about the realistic size or larger; (its setting, what it needs on)
    "z_offset_sigma_m": (0.3e-3, {}),
    "rotation_sigma_rad": (math.radians(0.5), {}),
    "tilt_sigma_rad": (math.radians(3.0), {}),
    "print_step_m": (50e-6, {}),
    "height_error_sigma_m": (20e-6, {}),
    "height_scale_sigma": (0.03, {}),
    "index_error_sigma": (0.03, {}),
    "frame_m": (2e-3, {}),
    "beam_waist_m": (15e-3, {}),
    "beam_waist_spread": (0.3, {"beam_waist_m": 15e-3}),
    "beam_center_sigma_m": (2e-3, {"beam_waist_m": 15e-3}),
    "frequency_error_max": (0.01, {}),
    "stray_fraction": (0.01, {}),
    "detector_z_sigma_m": (0.5e-3, {}),
    "detector_xy_sigma_m": (0.3e-3, {}),
    "detector_position_sigma_m": (0.3e-3, {}),
    "oversample": (2, {}),
}


@pytest.mark.parametrize("key", sorted(HIDDEN))
def test_each_hidden_error_alone_moves_the_readings(key):
    def readings(truth: Truth) -> np.ndarray:
        world = build_world(DESIGN, clock=Clock(0), seed=1, truth=truth, masks=lambda k: IMAGES[0])
        world.source.output_on = True
        world.wheel.masks = {1: "0"}
        return world.optical_signal()

    value, needs = HIDDEN[key]
    base = readings(replace(NOTHING, **needs))
    moved = readings(replace(NOTHING, **needs, **{key: value}))
    assert np.abs(moved - base).max() > 1e-3 * base.max(), key


def test_realistic_draws_are_seeded_and_independent_per_error():
    a = build_world(DESIGN, clock=Clock(0), seed=4, truth=PRESETS["realistic"])
    b = build_world(DESIGN, clock=Clock(0), seed=4, truth=replace(PRESETS["realistic"], tilt_sigma_rad=0.0))
    assert np.allclose(a.plate_rotations_rad(), b.plate_rotations_rad()) and np.any(a.plate_rotations_rad() != 0)
    assert np.all(b.pose().tilts_rad == 0) and np.any(a.pose().tilts_rad != 0)
    assert np.allclose(a.plate_offsets_m(), b.plate_offsets_m())
    flat = build_world(DESIGN, clock=Clock(0), seed=4, truth=replace(PRESETS["realistic"], z_offset_sigma_m=0.0))
    assert np.all(flat.plate_offsets_m()[:, 2] == 0) and np.all(a.plate_offsets_m()[:, 2] != 0)
    assert np.allclose(flat.plate_offsets_m()[:, :2], a.plate_offsets_m()[:, :2])
    assert np.allclose(flat.detectors.dark_v, a.detectors.dark_v)


def replace_layout(design, layout: DetectorLayout):
    """A copy of a tiny design with other detector regions."""
    other = tiny_design()
    other.layout = layout
    other.heights_m = design.heights_m
    return other


def test_a_read_after_a_move_starts_after_the_plates_that_did_not_move():
    path = light(oversample=2)
    first = pose([[0, 0, 0], [1e-4, 0, 0], [0, 0, 0]], rotations=[0.0, 0.0, 0.01])
    moved = pose([[0, 0, 0], [1e-4, 0, 0], [0, 2e-4, 1e-4]], rotations=[0.0, 0.0, 0.01])
    path.energies(IMAGES[:1], first)
    again = path.energies(IMAGES[:1], moved)  # from the field leaving plate 2
    fresh = light(oversample=2).energies(np.concatenate([IMAGES[:1], IMAGES[:1]]), moved)[:1]  # batch: no trail
    np.testing.assert_allclose(again, fresh, rtol=1e-5)
    np.testing.assert_allclose(
        path.energies(IMAGES[1:2], moved), light(oversample=2).energies(IMAGES[1:3], moved)[:1], rtol=1e-5
    )


def test_the_hidden_values_are_the_ones_the_light_uses():
    world = build_world(DESIGN, clock=Clock(0), seed=2, truth=PRESETS["realistic"])
    hidden = world.hidden()
    assert hidden["phase_scale"] == pytest.approx(
        hidden["height_scale"] * (hidden["refractive_index"] - 1) / (DESIGN.material.refractive_index - 1)
    )
    assert 30e-3 <= hidden["beam_waist_m"] <= 50e-3 and np.any(hidden["beam_center_m"] != 0)
    np.testing.assert_allclose(hidden["rotations_rad"], world.plate_rotations_rad())
    assert hidden["detector_errors_m"].shape == (len(DESIGN.layout), 2) and hidden["detector_offset_m"].shape == (3,)
