"""A detector read integrates over simulated time: the world's light is computed while the meter
integrates, and the read still sees the bench as it is when the integration ends."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.sim.clock import Clock
from labctl.sim.devices import SimDetectors


class Bench:
    """A signal that counts how often the light was computed, and a clock whose sleep can change it."""

    def __init__(self) -> None:
        self.level = 1.0
        self.computed: list[float] = []
        self.during_sleep = lambda: None

    def signal(self) -> np.ndarray:
        self.computed.append(self.level)
        return np.full(3, self.level)


class SteppingClock(Clock):
    """Time scale 1 without waiting: each sleep runs its ``meanwhile``, then what happens in it."""

    def __init__(self, bench: Bench):
        super().__init__(1.0)
        self.bench = bench
        self.slept: list[float] = []

    def sleep(self, device_seconds, cancel=None, meanwhile=None) -> bool:  # type: ignore[no-untyped-def]
        if meanwhile is not None:
            meanwhile()
        self.slept.append(device_seconds)
        self.bench.during_sleep()
        return True


def detectors(bench: Bench) -> SimDetectors:
    return SimDetectors(bench.signal, np.zeros(3), np.ones(3), np.zeros(3))


def test_the_light_is_computed_while_the_meter_integrates():
    bench = Bench()
    clock = SteppingClock(bench)
    readings = detectors(bench).integrate(clock, 0.6, samples=4)
    assert clock.slept == [0.6] and readings.shape == (4, 3)
    assert bench.computed[0] == 1.0  # before the integration time has passed
    np.testing.assert_array_equal(readings, 1.0)


def test_a_read_sees_the_bench_as_it_is_when_the_integration_ends():
    bench = Bench()
    clock = SteppingClock(bench)

    def stage_moves() -> None:
        bench.level = 2.0

    bench.during_sleep = stage_moves
    readings = detectors(bench).integrate(clock, 0.6, samples=2)
    np.testing.assert_array_equal(readings, 2.0)  # the state at the end, not the one computed early
    assert bench.computed == [1.0, 2.0]


def test_the_work_done_meanwhile_counts_against_the_duration(monkeypatch):
    now, slept = [100.0], []
    clock = Clock(0.5)
    monkeypatch.setattr(clock, "now", lambda: now[0])
    monkeypatch.setattr("labctl.sim.clock.time.sleep", slept.append)

    def work(seconds: float):
        return lambda: now.__setitem__(0, now[0] + seconds)

    clock.sleep(2.0, meanwhile=work(0.3))  # 1 s of wall time, 0.3 s of it the simulator's work
    clock.sleep(2.0, meanwhile=work(1.5))  # work longer than the duration: nothing left to sleep
    assert slept == [pytest.approx(0.7)]


def test_the_light_behind_the_next_mask_is_computed_while_the_wheel_turns():
    from labctl.sim.bench import SimulatedBench
    from tests.tiny import tiny_design, tiny_images

    images, _ = tiny_images(3)
    with SimulatedBench(tiny_design(), time_scale=0, masks=lambda key: images[int(key[-1])]) as sim:
        world = sim.world
        sim.load_masks({1: "tiny/test/0", 2: "tiny/test/1", 3: "tiny/test/2"})
        world.source.output_on = True
        world.wheel.slot = 1
        calls = world.optics_calls
        world.wheel.turn(sim.clock, 3, 2.0)  # the light behind slot 3, computed during the turn
        assert world.wheel.slot == 3 and world.optics_calls == calls + 1
        ahead = world.optical_signal().copy()  # the read after the turn: nothing left to compute
        assert world.optics_calls == calls + 1
        world.source.output_on = False  # nothing to compute ahead with the source off
        world.wheel.turn(sim.clock, 2, 1.0)
        assert world.optics_calls == calls + 1
        world.source.output_on = True
        fresh = world.optical_signal()  # behind slot 2, computed at the read
        assert world.optics_calls == calls + 2 and not np.allclose(fresh, ahead, rtol=1e-3)
        behind_3 = world.energies(world.input_amplitude(3)[None])[0] * world.power_factor()
        np.testing.assert_allclose(ahead, behind_3, rtol=1e-12)  # what was computed ahead is slot 3's light
