"""What a procedure may use of a bench: the one surface the real bench and the soft bench share.

The runner, the calibration, the alignment and the campaign are written against these protocols,
not against ``labctl.bench.Bench`` (instruments on links) or ``labctl.sim.soft.SoftBench``
(roles on an in-memory world), so that a type checker holds both to the same surface
(``tests/test_bench_surface.py`` runs mypy on exactly that). Members are read-only properties: a
bench may hold a more specific axis or projector than the role.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from labctl.drivers.roles import Axis, DetectorArray, InputProjector, RotationAxis, Source


class PlateSurface(Protocol):
    """One plate's axes and where the design wants it (metres; radians for ``r``)."""

    @property
    def name(self) -> str: ...

    @property
    def x(self) -> Axis: ...

    @property
    def y(self) -> Axis: ...

    @property
    def z(self) -> Axis | None: ...

    @property
    def r(self) -> RotationAxis | None: ...

    @property
    def nominal_m(self) -> tuple[float, float, float | None]: ...


class BenchSurface(Protocol):
    """The roles of a bench that procedures drive: source, detectors, input projector, plates."""

    @property
    def source(self) -> Source: ...

    @property
    def detectors(self) -> DetectorArray: ...

    @property
    def projector(self) -> InputProjector: ...

    @property
    def plates(self) -> Mapping[str, PlateSurface]: ...
