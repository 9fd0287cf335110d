"""Checked by mypy (``[tool.mypy] files``), never run: the real and the soft bench offer procedures
one surface (``labctl.plans.surface.BenchSurface``). A member missing or of another type on either
bench is a type error in CI."""

from labctl.bench import Bench
from labctl.plans.surface import BenchSurface
from labctl.sim.soft import SoftBench


def both_benches_are_bench_surfaces(real: Bench, soft: SoftBench) -> list[BenchSurface]:
    return [real, soft]
