"""labctl.design.fabrication: what the printer needs, checked before it is sent.

Plates become quantized pillars on a base inside a frame with alignment marks; input images become
opaque stencils with the object cut through and bridges holding every enclosed island; both are
written as watertight binary STL and read back to prove it. See docs/fabrication.md.
"""

from labctl.design.fabrication.checks import MeshCheck, mesh_checks, probe_top_heights, read_stl
from labctl.design.fabrication.export import MANIFEST_NAME, export_design, select_test_indices
from labctl.design.fabrication.layout import FramedGrid, framed_grid
from labctl.design.fabrication.mesh import SADDLE_OFFSET_M, heightfield_triangles, write_stl
from labctl.design.fabrication.params import STL_UNITS_PER_M, FabricationParams
from labctl.design.fabrication.plates import neuron_centres_m, plate_heightfield, plate_triangles, round_to_steps
from labctl.design.fabrication.printed import PrintedDesign, as_printed, printed_accuracy, printed_input
from labctl.design.fabrication.stencils import (
    Bridge,
    Stencil,
    bridge_islands,
    make_stencil,
    solid_pieces,
    stencil_heightfield,
    stencil_triangles,
)

__all__ = [
    "MANIFEST_NAME",
    "SADDLE_OFFSET_M",
    "STL_UNITS_PER_M",
    "Bridge",
    "FabricationParams",
    "FramedGrid",
    "MeshCheck",
    "PrintedDesign",
    "Stencil",
    "as_printed",
    "bridge_islands",
    "export_design",
    "framed_grid",
    "heightfield_triangles",
    "make_stencil",
    "mesh_checks",
    "neuron_centres_m",
    "plate_heightfield",
    "plate_triangles",
    "printed_accuracy",
    "printed_input",
    "probe_top_heights",
    "read_stl",
    "round_to_steps",
    "select_test_indices",
    "solid_pieces",
    "stencil_heightfield",
    "stencil_triangles",
    "write_stl",
]
