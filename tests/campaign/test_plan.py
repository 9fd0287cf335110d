"""The campaign plan as data: schedule, cassettes, darks, resume skipping, spec validation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from labctl.campaign.plan import Calibrator, campaign_plan, schedule
from labctl.campaign.spec import CampaignSpec
from labctl.errors import ConfigError
from labctl.plans import messages as m
from labctl.plans.testing import collect

LABELS = np.repeat(np.arange(10), 5)  # 50 images, 5 per class


def fake_reading(msg):
    values = np.arange(10, dtype=float)
    return SimpleNamespace(values=values, spread=np.zeros(10), timestamp=1.0)


ANSWERS = {m.ReadDetectors: fake_reading, m.ReadPositions: {("L1", "x"): 0.01, ("L1", "y"): 0.02}}


def run_as_data(samples, done=frozenset(), dark_every=0, uses_wheel=True):
    plan = campaign_plan(
        samples,
        image=lambda i: np.zeros((28, 28)),
        predict=lambda i: np.eye(10)[i % 10],
        calibrator=Calibrator(lambda v, dark: v - (0 if dark is None else dark * 0)),
        averages=3,
        dark_every=dark_every,
        done=set(done),
        uses_wheel=uses_wheel,
    )
    return collect(plan, ANSWERS)


def test_schedule_splits_into_cassettes_and_repeats_in_place():
    samples = schedule(list(range(8)), LABELS, "mnist5k", "test", repeats=2, capacity=6)
    assert [s.seq for s in samples] == list(range(16))
    assert [s.cassette for s in samples] == [0] * 12 + [1] * 4
    assert [s.slot for s in samples[:6]] == [1, 2, 3, 4, 5, 6]
    assert [s.repeat for s in samples[:12]] == [0] * 6 + [1] * 6
    assert samples[0].key == "mnist5k/test/0"


def test_plan_loads_each_cassette_once_and_records_every_sample():
    samples = schedule(list(range(8)), LABELS, "mnist5k", "test", repeats=1, capacity=6)
    steps, finished = run_as_data(samples)
    loads = [s for s in steps if isinstance(s, m.LoadCassette)]
    assert [dict(s.slots) for s in loads] == [
        {i + 1: f"mnist5k/test/{i}" for i in range(6)},
        {1: "mnist5k/test/6", 2: "mnist5k/test/7"},
    ]
    records = [s for s in steps if isinstance(s, m.Record) and s.stream == "samples"]
    assert [r.data["seq"] for r in records] == list(range(8))
    assert records[0].data["measured_class"] == 9  # argmax of the fake reading
    assert records[3].data["predicted_class"] == 3
    assert finished == 8
    assert isinstance(steps[-1], m.SetSource) and steps[-1].output_on is False


def test_darks_are_remeasured_with_the_source_off():
    samples = schedule(list(range(6)), LABELS, "d", "test", repeats=1, capacity=None)
    steps, _ = run_as_data(samples, dark_every=2, uses_wheel=False)
    dark_records = [s for s in steps if isinstance(s, m.Record) and s.stream == "darks"]
    assert len(dark_records) == 1 + 2  # at the start, after samples 2 and 4 (not after the last)
    first_read = next(i for i, s in enumerate(steps) if isinstance(s, m.ReadDetectors))
    assert steps[first_read - 1] == m.SetSource(output_on=False)
    assert not any(isinstance(s, m.LoadCassette) for s in steps)


def test_resume_skips_done_samples_and_their_cassettes():
    samples = schedule(list(range(8)), LABELS, "mnist5k", "test", repeats=1, capacity=6)
    steps, finished = run_as_data(samples, done=set(range(7)))
    records = [s for s in steps if isinstance(s, m.Record) and s.stream == "samples"]
    assert [r.data["seq"] for r in records] == [7]
    assert len([s for s in steps if isinstance(s, m.LoadCassette)]) == 1
    assert finished == 8


def test_spec_selection_and_validation():
    spec = CampaignSpec(count_per_class=2, seed=3)
    chosen = spec.select(LABELS)
    assert len(chosen) == 20 and np.all(np.bincount(LABELS[chosen]) == 2)
    assert np.array_equal(chosen, CampaignSpec(count_per_class=2, seed=3).select(LABELS))
    assert CampaignSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="exactly one"):
        CampaignSpec(count=3, count_per_class=1)
    with pytest.raises(ConfigError, match="unknown key"):
        CampaignSpec.from_dict({"count": 3, "averges": 2})
    with pytest.raises(ConfigError, match="beyond"):
        CampaignSpec(indices=(60,)).select(LABELS)
