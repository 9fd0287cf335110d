"""labctl.optics: the physics every other part of labctl stands on.

Pure numerics (numpy + scipy.fft, no I/O): the geometry of a diffractive network, band-limited
angular-spectrum propagation, plates, input masks, SLM lookup tables, detector regions, and the
batched forward model of the whole network with its hand-derived adjoint. See docs/optics.md.
"""

from labctl.optics.adjoint import Gradients
from labctl.optics.bench_params import BenchParams
from labctl.optics.detectors import DetectorLayout
from labctl.optics.elements import Material, height_to_phase, phase_to_height, plate_transmission
from labctl.optics.geometry import Geometry
from labctl.optics.inputs import SlmLut, embed_image
from labctl.optics.jacobian import EnergyJacobian
from labctl.optics.network import D2NN, ForwardResult
from labctl.optics.propagation import fourier_shift, propagate, transfer_function
from labctl.optics.sources import gaussian_beam, illumination_field, plane_wave

__all__ = [
    "D2NN",
    "BenchParams",
    "DetectorLayout",
    "EnergyJacobian",
    "ForwardResult",
    "Geometry",
    "Gradients",
    "Material",
    "SlmLut",
    "embed_image",
    "fourier_shift",
    "gaussian_beam",
    "height_to_phase",
    "illumination_field",
    "phase_to_height",
    "plane_wave",
    "plate_transmission",
    "propagate",
    "transfer_function",
]
