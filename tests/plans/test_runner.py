"""The runner against an in-memory bench: answers, pause/abort, safe shutdown, limits."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from labctl.drivers.axis import AxisBase, RotationBase
from labctl.drivers.roles import Reading
from labctl.errors import Aborted, LabctlError, LimitError
from labctl.plans import messages as m
from labctl.plans.runner import MemoryStore, Runner
from labctl.plans.testing import collect


class _TimedMotion:
    """In-memory hardware calls: a move takes ``move_s`` wall seconds."""

    def _setup(self, move_s: float) -> None:
        self.pos = 0.0
        self.move_s = move_s
        self.until = 0.0
        self.stops = 0

    def _hw_move_to(self, position):
        self.pos = position
        self.until = time.monotonic() + self.move_s

    def _hw_home(self):
        self._hw_move_to(0.0)

    def _hw_is_moving(self):
        return time.monotonic() < self.until

    def _hw_stop(self):
        self.stops += 1
        self.until = 0.0


class TimedAxis(_TimedMotion, AxisBase):
    """An in-memory translation axis, soft limits +-10 mm."""

    def __init__(self, name: str, move_s: float = 0.0):
        AxisBase.__init__(self, name, (-0.01, 0.01), poll_interval_s=0.001)
        self._setup(move_s)

    def _hw_position_m(self):
        return self.pos


class TimedRotation(_TimedMotion, RotationBase):
    """An in-memory rotation axis, soft limits +-0.5 rad."""

    def __init__(self, name: str, move_s: float = 0.0):
        RotationBase.__init__(self, name, (-0.5, 0.5), poll_interval_s=0.001)
        self._setup(move_s)

    def _hw_angle_rad(self):
        return self.pos


class SwitchSource:
    def __init__(self):
        self.on = False

    def output_on(self):
        self.on = True

    def output_off(self):
        self.on = False


class CountingDetectors:
    def __init__(self):
        self.count = 0

    def read(self, averages=1):
        self.count += 1
        return Reading(
            values=np.full(10, float(self.count)), spread=np.zeros(10), timestamp=time.time(), averages=averages
        )


def memory_bench(move_s: float = 0.0):
    plates = {
        "L1": SimpleNamespace(
            x=TimedAxis("L1.x", move_s), y=TimedAxis("L1.y", move_s), z=None, r=TimedRotation("L1.r", move_s)
        ),
        "L2": SimpleNamespace(x=TimedAxis("L2.x", move_s), y=TimedAxis("L2.y", move_s), z=None, r=None),
    }
    return SimpleNamespace(plates=plates, source=SwitchSource(), detectors=CountingDetectors(), projector=None)


def scan_plan(points):
    total = 0.0
    for i, x in enumerate(points):
        yield from m.move({("L1", "x"): x})
        reading = yield from m.read(2)
        total += reading.values[0]
        yield from m.record("scan", x=x, value=reading.values[0])
        yield from m.progress(i + 1, len(points))
    return total


def test_plan_as_data_lists_its_steps():
    steps, total = collect(scan_plan([0.0, 1e-3]), answers={m.ReadDetectors: lambda msg: SimpleNamespace(values=[5.0])})
    kinds = [type(s).__name__ for s in steps]
    assert kinds == ["MoveAxes", "ReadDetectors", "Record", "Progress", "Checkpoint"] * 2
    assert steps[0].targets == {("L1", "x"): 0.0}
    assert total == 10.0


def test_runner_answers_and_stores():
    bench = memory_bench()
    store = MemoryStore()
    runner = Runner(bench, store=store)
    total = runner.run(scan_plan([1e-3, 2e-3, 3e-3]))
    assert total == 1.0 + 2.0 + 3.0
    assert [r["x"] for r in store.streams["scan"]] == [1e-3, 2e-3, 3e-3]
    assert bench.plates["L1"].x.pos == 3e-3
    assert runner.detector_reads == 6  # three reads of two averages
    assert runner.travel_m == pytest.approx(3e-3)
    assert runner.state == "done"


def test_move_outside_limits_is_refused_before_anything_moves():
    bench = memory_bench()
    plan = m.move({("L1", "y"): 1e-3, ("L1", "x"): 0.5})
    with pytest.raises(LimitError, match="L1.x"):
        Runner(bench).run(plan)
    assert bench.plates["L1"].y.pos == 0.0


def test_abort_during_move_stops_axes_switches_source_off_and_runs_plan_cleanup():
    bench = memory_bench(move_s=5.0)
    cleaned = []

    def plan():
        yield m.SetSource(output_on=True)
        try:
            yield from m.move({("L1", "x"): 1e-3})
        finally:
            cleaned.append(True)

    runner = Runner(bench)
    threading.Timer(0.1, runner.abort).start()
    start = time.monotonic()
    with pytest.raises(Aborted):
        runner.run(plan())
    assert time.monotonic() - start < 2.0
    assert cleaned == [True]
    assert bench.source.on is False
    assert bench.plates["L1"].x.stops >= 1
    assert runner.state == "aborted"


def test_pause_holds_at_checkpoint_until_resumed():
    bench = memory_bench()
    runner = Runner(bench)
    runner.pause()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (runner.run(scan_plan([0.0, 1e-3])), done.set()))
    thread.start()
    time.sleep(0.2)
    assert runner.state == "paused" and not done.is_set()
    assert bench.detectors.count == 1  # stopped at the first checkpoint
    runner.resume()
    thread.join(2)
    assert done.is_set() and bench.detectors.count == 2


def test_error_in_plan_still_shuts_down_safely():
    bench = memory_bench()

    def plan():
        yield m.SetSource(output_on=True)
        raise ValueError("boom")

    with pytest.raises(ValueError):
        Runner(bench).run(plan())
    assert bench.source.on is False


def test_rotation_axes_turn_together_and_read_back_in_radians():
    bench = memory_bench()

    def plan():
        yield from m.rotate({"L1": -0.3})
        return (yield from m.angles())

    assert Runner(bench).run(plan()) == {"L1": pytest.approx(-0.3)}


def test_a_turn_outside_the_limits_or_of_a_plate_without_rotation_axis_moves_nothing():
    bench = memory_bench()
    with pytest.raises(LimitError, match=r"L1\.r: target 45\.8366 deg is outside the soft limits"):
        Runner(bench).run(m.rotate({"L1": 0.8}))
    with pytest.raises(LabctlError, match="turn plate.*L2, which have no rotation axis"):
        Runner(bench).run(m.rotate({"L1": 0.1, "L2": 0.1}))
    assert bench.plates["L1"].r.pos == 0.0


def test_abort_stops_rotation_axes_too():
    bench = memory_bench(move_s=5.0)
    runner = Runner(bench)
    threading.Timer(0.1, runner.abort).start()
    with pytest.raises(Aborted):
        runner.run(m.rotate({"L1": 0.2}))
    assert bench.plates["L1"].r.stops >= 1 and not bench.source.on


def test_turn_plate_goes_to_the_operator_and_without_one_is_refused():
    asked = []

    def plan():
        yield m.TurnPlate("L2", -0.01, 0.001, "turn L2")

    Runner(memory_bench(), operator=asked.append).run(plan())
    assert asked == [m.TurnPlate("L2", -0.01, 0.001, "turn L2")]
    with pytest.raises(LabctlError, match="needs a plate turned by hand, but no operator is attached"):
        Runner(memory_bench()).run(plan())


def test_home_reaches_a_rotation_axis_by_name_only():
    bench = memory_bench()
    bench.plates["L1"].r.pos = bench.plates["L1"].x.pos = 0.003
    Runner(bench).run(home_plan(()))  # all: the translation axes; a corrected rotation stays
    assert bench.plates["L1"].x.pos == 0.0 and bench.plates["L1"].r.pos == 0.003
    Runner(bench).run(home_plan((("L1", "r"),)))
    assert bench.plates["L1"].r.pos == 0.0


def home_plan(axes):
    yield m.HomeAxes(axes)


def test_steps_are_answered_from_one_table_and_an_unknown_one_is_named():
    class Note(m.Log):  # a subclass is answered by its base's handler
        pass

    runner = Runner(memory_bench())
    seen = []
    runner.handlers[m.Checkpoint] = lambda msg: seen.append("checkpoint")

    def plan():
        yield Note("a note")
        yield m.Checkpoint()
        yield m.Msg()

    with pytest.raises(LabctlError, match="does not know the plan step Msg"):
        runner.run(plan())
    assert seen == ["checkpoint"]
