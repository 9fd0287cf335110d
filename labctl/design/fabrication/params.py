"""What the printer needs to know: step, base, frame, marks, stencil thickness and bridge width.

One frozen dataclass so that the export command, the manifest and the tests all speak of the same
numbers. Defaults suit a PolyJet printer (e.g. Stratasys Objet, VeroBlackPlus) at the reference
geometry (0.4 mm neurons); every one is a command-line option of ``labctl design export``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from labctl.errors import ConfigError

#: Binary STL carries no unit; slicers assume millimetres, so coordinates are written in mm.
STL_UNITS_PER_M = 1000.0


@dataclass(frozen=True)
class FabricationParams:
    """Printer and mounting parameters, all lengths in metres.

    step_m: printer layer thickness; plate heights are rounded to whole steps (16 um is PolyJet's
        high-quality layer; 28-32 um its standard one).
    base_m: solid base under every pillar and thickness of the plate frame.
    frame_m: width of the solid margin around the neuron area, which carries the marks.
    mark_m: side of the square alignment through-holes (one per corner, plus the orientation hole).
    stencil_thickness_m: thickness of an input stencil (an opaque plate with the object cut through).
    bridge_width_m: narrowest bridge that holds an enclosed island of a stencil to the frame.
    threshold: image value above which a stencil pixel is cut open (images are in [0, 1]).
    """

    step_m: float = 16e-6
    base_m: float = 1e-3
    frame_m: float = 5e-3
    mark_m: float = 2e-3
    stencil_thickness_m: float = 2e-3
    bridge_width_m: float = 0.8e-3
    threshold: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"fabrication: {f.name} must be a finite number, got {value!r}")
        for name in ("step_m", "base_m", "frame_m", "mark_m", "stencil_thickness_m", "bridge_width_m"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"fabrication: {name} must be > 0 metres, got {getattr(self, name)!r}")
        if self.step_m > 1e-3:
            raise ConfigError(
                f"fabrication: step_m={self.step_m!r} is larger than 1 mm; give the printer layer in "
                "metres (16 um is 16e-6)"
            )
        if not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"fabrication: threshold must be in [0, 1), got {self.threshold!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers, for the export manifest."""
        return asdict(self)
