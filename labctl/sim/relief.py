"""The printed plates as the simulated bench's light meets them: relief made by a printer, rasterized
with its true pose onto a grid finer than the design's.

What a printer makes of a design: the STL's staircase (``labctl.design.fabrication.plates.round_to_steps``,
the one rule the export uses), then a random height error per neuron and one scale error for the
whole print (a mis-calibrated build axis, shrinkage), clipped at the base (a relief cannot be
negative).

How the light meets a printed plate: square neurons of side ``pitch`` on a plate that is rotated by
phi about its centre (counter-clockwise seen from the source, i.e. +x turns towards +y) and tilted
by theta_x about x and theta_y about y. For every sample of the fine grid (the plate's own frame,
translated with the plate but not rotated), ``supersample`` x ``supersample`` points are mapped back
onto the plate: foreshortening undone (u = x / cos theta_y, v = y / cos theta_x), then the rotation
(a, b) = R(-phi)(u, v). Each point stands for a small square (its share of the sample); the point
takes the transmissions of the neurons that square overlaps, weighted by the overlap (the square
taken parallel to the neuron edges: exact without rotation, off by a sliver of order phi times its
area with one), and the sample the mean over its points. So the sample holds the area-weighted
transmission, and readings move continuously with every pose parameter, not in steps of a
sample. Outside the neuron area the plate is its flat printed frame, relief 0.

Approximation (thin element, first order in the tilt): the tilted relief acts in the plate's
central plane. The light's oblique path through a slab of thickness h tilted by theta is kept
exactly (optical path difference h (sqrt(n^2 - sin^2 theta) - cos theta), absorption over the
refracted path h / cos theta_t); the axial displacement of each neuron (x sin theta, +-0.14 mm at
the edge of an 8 cm plate tilted by 0.2 degree) is not: the light is not propagated over it.
"""

from __future__ import annotations

import math

import numpy as np

from labctl.design.fabrication.plates import round_to_steps
from labctl.optics.elements import Material, plate_transmission


def printed_heights(
    design_heights_m: np.ndarray,
    step_m: float,
    neuron_error_m: np.ndarray | float = 0.0,
    scale: float = 1.0,
) -> np.ndarray:
    """What the printer makes of ``design_heights_m`` (L, n, n): the staircase of ``step_m``
    (0: the design's heights exactly), plus ``neuron_error_m``, times ``scale``, at least 0."""
    h = np.asarray(design_heights_m, dtype=np.float64)
    if step_m > 0:
        h = round_to_steps(h, step_m)
    return np.maximum((h + neuron_error_m) * scale, 0.0)


def tilted_material(material: Material, tilt_rad: tuple[float, float]) -> Material:
    """A material whose normal-incidence transmission equals ``material``'s at this tilt.

    A slab of thickness h tilted by theta (cos theta = cos theta_x cos theta_y) delays by
    h (sqrt(n^2 - sin^2 theta) - cos theta) against air and absorbs over h / cos theta_t, with
    sin theta_t = sin theta / n; n_eff - 1 and kappa_eff carry exactly that per unit h.
    """
    cos_t = math.cos(tilt_rad[0]) * math.cos(tilt_rad[1])
    if cos_t == 1.0:
        return material
    sin2 = 1.0 - cos_t**2
    n = material.refractive_index
    cos_refracted = math.sqrt(1.0 - sin2 / n**2)
    return Material(1.0 + math.sqrt(n**2 - sin2) - cos_t, material.extinction / cos_refracted)


def plate_raster(
    heights_m: np.ndarray,
    pitch_m: float,
    oversample: int,
    window_neurons: int,
    wavelength_m: float,
    material: Material,
    rotation_rad: float = 0.0,
    tilt_rad: tuple[float, float] = (0.0, 0.0),
    supersample: int = 2,
    dtype: str = "complex64",
) -> np.ndarray:
    """Transmission (M, M), M = window_neurons * oversample, of one printed plate (n, n) in its pose.

    The window is centred on the plate; its samples line up with the neuron edges, so a plate
    without rotation or tilt is sampled exactly (each sample inside one neuron) and needs no
    supersampling.
    """
    h = np.asarray(heights_m)
    n = h.shape[-1]
    t_neuron = plate_transmission(h, wavelength_m, tilted_material(material, tilt_rad), dtype)
    # one more "neuron" that stands for the flat frame around the neuron area (relief 0)
    table = np.append(t_neuron.ravel(), np.asarray(1.0, dtype))
    k = int(oversample)
    m = window_neurons * k
    dx = pitch_m / k
    centres = (np.arange(m) - (m - 1) / 2) * dx
    posed = rotation_rad != 0.0 or tilt_rad[0] != 0.0 or tilt_rad[1] != 0.0
    s = int(supersample) if posed else 1
    sub = ((np.arange(s) + 0.5) / s - 0.5) * dx
    # half the side of one point's square on the plate, in neurons, along a (columns) and b (rows)
    half_a = dx / s / math.cos(tilt_rad[1]) / pitch_m / 2
    half_b = dx / s / math.cos(tilt_rad[0]) / pitch_m / 2
    cos_r, sin_r = math.cos(rotation_rad), math.sin(rotation_rad)
    out = np.zeros((m, m), np.complex128)
    for oy in sub:
        v = ((centres + oy) / math.cos(tilt_rad[0]))[:, None]  # rows: y
        for ox in sub:
            u = ((centres + ox) / math.cos(tilt_rad[1]))[None, :]  # columns: x
            a = (cos_r * u + sin_r * v) / pitch_m + n / 2  # in neurons from the plate's corner
            b = (-sin_r * u + cos_r * v) / pitch_m + n / 2
            for cols, col_weights in _split(a, half_a):
                for rows, row_weights in _split(b, half_b):
                    inside = (cols >= 0) & (cols < n) & (rows >= 0) & (rows < n)
                    out += (row_weights * col_weights) * table[np.where(inside, rows * n + cols, n * n)]
    out /= s * s
    return out.astype(dtype)


def _split(position: np.ndarray, half: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (at most two) neurons that an interval [position - half, position + half] (in neurons,
    2 half <= 1) overlaps along one axis, with the fraction of the interval in each."""
    first = np.floor(position - half)
    in_first = np.clip((first + 1 - (position - half)) / (2 * half), 0.0, 1.0)
    first = first.astype(np.int64)
    return [(first, in_first), (first + 1, 1.0 - in_first)]
