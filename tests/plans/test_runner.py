"""The runner against an in-memory bench: answers, pause/abort, safe shutdown, limits."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from labctl.drivers.roles import Reading
from labctl.errors import Aborted, LimitError
from labctl.plans import messages as m
from labctl.plans.runner import MemoryStore, Runner
from labctl.plans.testing import collect


class SoftAxis:
    """An in-memory axis that takes ``move_s`` wall seconds per move."""

    def __init__(self, name: str, move_s: float = 0.0):
        self.name = name
        self.pos = 0.0
        self.move_s = move_s
        self.until = 0.0
        self.stops = 0

    def limits_m(self):
        return (-0.01, 0.01)

    def position_m(self):
        return self.pos

    def move_to(self, target, wait=True, timeout_s=None):
        self.pos = target
        self.until = time.monotonic() + self.move_s

    def home(self, wait=True, timeout_s=None):
        self.move_to(0.0)

    def is_moving(self):
        return time.monotonic() < self.until

    def wait_until_stopped(self, timeout_s=None):
        pass

    def stop(self):
        self.stops += 1
        self.until = 0.0


class SoftSource:
    def __init__(self):
        self.on = False

    def output_on(self):
        self.on = True

    def output_off(self):
        self.on = False


class SoftDetectors:
    def __init__(self):
        self.count = 0

    def read(self, averages=1):
        self.count += 1
        return Reading(values=np.full(10, float(self.count)), spread=np.zeros(10), timestamp=time.time(), averages=averages)


def soft_bench(move_s: float = 0.0):
    plates = {"L1": SimpleNamespace(x=SoftAxis("L1.x", move_s), y=SoftAxis("L1.y", move_s), z=None)}
    return SimpleNamespace(plates=plates, source=SoftSource(), detectors=SoftDetectors(), projector=None)


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
    bench = soft_bench()
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
    bench = soft_bench()
    plan = m.move({("L1", "y"): 1e-3, ("L1", "x"): 0.5})
    with pytest.raises(LimitError, match="L1.x"):
        Runner(bench).run(plan)
    assert bench.plates["L1"].y.pos == 0.0


def test_abort_during_move_stops_axes_switches_source_off_and_runs_plan_cleanup():
    bench = soft_bench(move_s=5.0)
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
    bench = soft_bench()
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
    bench = soft_bench()

    def plan():
        yield m.SetSource(output_on=True)
        raise ValueError("boom")

    with pytest.raises(ValueError):
        Runner(bench).run(plan())
    assert bench.source.on is False
