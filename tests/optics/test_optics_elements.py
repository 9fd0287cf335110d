"""Geometry, materials, plates, input masks, SLM lookup tables, illumination."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.errors import ConfigError
from labctl.optics import (
    Geometry,
    Material,
    SlmLut,
    embed_image,
    gaussian_beam,
    height_to_phase,
    phase_to_height,
    plane_wave,
    plate_transmission,
)


def test_reference_geometry_and_dict_round_trip():
    geom = Geometry.reference()
    assert (geom.wavelength_m, geom.pitch_m, geom.n, geom.n_layers) == (0.75e-3, 0.4e-3, 200, 5)
    assert geom.padded == 400 and geom.aperture_m == pytest.approx(0.08)
    np.testing.assert_allclose(geom.plate_z_m(), [0.03, 0.06, 0.09, 0.12, 0.15])
    g2 = Geometry(n=10, oversample=2, dtype="complex128", illumination=("gaussian", 2e-3))
    assert g2.samples == 20 and g2.sample_pitch_m == pytest.approx(0.2e-3)
    assert Geometry.from_dict(g2.to_dict()) == g2
    assert Geometry.from_dict({**g2.to_dict(), "illumination": ["gaussian", 2e-3]}) == g2


@pytest.mark.parametrize(
    "bad",
    [
        {"wavelength_m": -1.0},
        {"n": 0},
        {"oversample": 1.5},
        {"dtype": "float32"},
        {"illumination": ("flat", 1.0)},
        {"illumination": ("gaussian", 0.0)},
    ],
)
def test_geometry_refuses_bad_values(bad):
    with pytest.raises(ConfigError):
        Geometry(**bad)
    with pytest.raises(ConfigError):
        Geometry.from_dict({"wavelenght_m": 1e-3})


def test_phase_height_conversion_and_plate_transmission():
    mat = Material(refractive_index=1.7227, extinction=0.031)
    wl = 0.75e-3
    h = phase_to_height(2 * np.pi, wl, mat)
    assert h == pytest.approx(wl / 0.7227)  # about 1.04 mm of relief for 2 pi
    assert height_to_phase(h, wl, mat) == pytest.approx(2 * np.pi)
    heights = np.array([0.0, 0.25e-3, 1.0e-3])
    t = plate_transmission(heights, wl, mat, "complex128")
    np.testing.assert_allclose(np.angle(t * np.exp(-2j * np.pi * 0.7227 * heights / wl)), 0, atol=1e-12)
    np.testing.assert_allclose(np.abs(t), np.exp(-2 * np.pi * 0.031 * heights / wl))
    assert plate_transmission(heights, wl, Material.lossless(1.5)).dtype == np.complex64
    assert np.all(np.abs(plate_transmission(heights, wl, Material.lossless(1.5))) == pytest.approx(1))
    with pytest.raises(ConfigError):
        Material(refractive_index=0.9)
    assert Material.from_dict(mat.to_dict()) == mat


def test_embed_image_centres_and_upsamples():
    geom = Geometry(n=20)
    img = np.zeros((2, 3, 4))
    img[0, 0, 0] = 1.0
    img[1, 2, 3] = 0.5
    out = embed_image(img, geom, scale=3)
    assert out.shape == (2, 20, 20) and out.dtype == np.float32
    r0, c0 = (20 - 9) // 2, (20 - 12) // 2
    assert np.all(out[0, r0 : r0 + 3, c0 : c0 + 3] == 1) and out[0].sum() == 9
    assert np.all(out[1, r0 + 6 : r0 + 9, c0 + 9 : c0 + 12] == 0.5) and out[1].sum() == 4.5
    assert embed_image(img[0], geom, scale=3).shape == (20, 20)
    with pytest.raises(ConfigError):
        embed_image(img, geom, scale=6)


def test_slm_lut_maps_gray_levels():
    lut = SlmLut.linear(np.pi)
    gray = np.array([[0, 128], [255, 64]], dtype=np.uint8)
    t = lut.apply(gray)
    np.testing.assert_allclose(np.angle(t), np.array([[0, np.pi / 2], [np.pi * 255 / 256, np.pi / 4]]), atol=1e-6)
    measured = SlmLut.from_phase(np.linspace(0, 5, 256), amplitude=np.linspace(1, 0.8, 256))
    assert abs(measured.apply(np.array([255]))[0]) == pytest.approx(0.8)
    again = SlmLut.from_dict(measured.to_dict())
    np.testing.assert_allclose(again.values, measured.values)
    with pytest.raises(ConfigError):
        lut.apply(np.array([256]))
    with pytest.raises(ConfigError):
        lut.apply(np.array([1.5]))
    with pytest.raises(ConfigError):
        SlmLut(np.ones(10))


def test_illumination_fields():
    geom = Geometry(n=21, pitch_m=1e-3)
    assert np.all(plane_wave(geom) == 1)
    g = gaussian_beam(geom, 3e-3, center_m=(2e-3, 0.0))
    assert g[10, 12] == pytest.approx(1.0)  # the centre sample sits at x = 2 mm
    assert abs(g[10, 15]) == pytest.approx(np.exp(-1.0), rel=1e-6)  # one waist further
