"""A campaign on the soft bench: every sample stored once, abort then resume, prediction stored."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.calibration.files import jsonable
from labctl.campaign.run import run_campaign
from labctl.campaign.spec import CampaignSpec
from labctl.campaign.store import read_campaign
from labctl.errors import Aborted
from labctl.optics import embed_image
from labctl.plans.messages import Progress
from labctl.plans.runner import Runner
from labctl.readout import Readout
from labctl.sim.soft import SoftBench
from tests.tiny import tiny_design, tiny_images

IMAGES, LABELS = tiny_images()


def setup():
    design = tiny_design()
    bench = SoftBench.create(design, seed=2, masks=lambda key: IMAGES[int(key.rsplit("/", 1)[1])])
    for plate in bench.plates.values():
        for axis in (plate.x, plate.y):
            axis.home()
            axis.move_to(plate.nominal_m[0])
    model = design.model()

    def predict(image):
        return model.energies(embed_image(image[None], design.geometry, scale=1), design.heights_m)[0]

    return bench, predict


def kwargs(predict):
    return dict(
        images=IMAGES,
        labels=LABELS,
        dataset="tiny",
        predict=predict,
        calibrate=lambda v, dark: v - dark,
        operator=lambda msg: None,
    )


def test_campaign_stores_every_sample_with_prediction(tmp_path):
    bench, predict = setup()
    path = run_campaign(bench, tmp_path / "c.h5", spec=CampaignSpec(count=8, averages=2, repeats=2), **kwargs(predict))
    meta, streams = read_campaign(path)
    samples = streams["samples"]
    assert list(samples["seq"]) == list(range(16))
    assert meta["complete"] and meta["spec"]["count"] == 8
    assert samples["raw"].shape == (16, 10) and samples["positions_m"].shape == (16, 6)
    np.testing.assert_allclose(samples["predicted"][0], predict(IMAGES[samples["index"][0]]), rtol=1e-6)
    assert bench.source.is_output_on() is False


def test_abort_midway_then_resume_records_each_sample_once(tmp_path):
    bench, predict = setup()
    path = tmp_path / "c.h5"
    runner = Runner(bench, operator=lambda msg: None)

    def abort_after_five(msg: Progress):
        if msg.done == 5:
            runner.abort()

    runner.progress = abort_after_five
    with pytest.raises(Aborted):
        run_campaign(bench, path, spec=CampaignSpec(count=12, averages=1), runner=runner, **kwargs(predict))
    assert bench.source.is_output_on() is False
    run_campaign(bench, path, resume=True, **kwargs(predict))
    _, streams = read_campaign(path)
    assert sorted(streams["samples"]["seq"]) == list(range(12))
    assert len(streams["samples"]["seq"]) == 12


def test_a_recorded_readout_is_applied_next_to_the_plain_argmax_also_on_resume(tmp_path):
    from labctl.campaign.analysis import summarize

    bench, predict = setup()
    rng = np.random.default_rng(5)
    readout = Readout(rng.normal(size=(10, 10)), rng.normal(size=10), 0.01)  # any readout: it must be the one used
    fitted_on = ["tiny/test/0", "tiny/test/1"]  # pretend it was fitted on two of the campaign's samples
    record = {"version": 1, "data": {**readout.to_data(), "training": {"split": "test", "keys": fitted_on}}}
    metadata = {"calibration": {"readout": jsonable(record, "test")}}
    path = tmp_path / "c.h5"
    runner = Runner(bench, operator=lambda msg: None)
    runner.progress = lambda msg: runner.abort() if msg.done == 4 else None
    with pytest.raises(Aborted):
        run_campaign(
            bench, path, spec=CampaignSpec(count=10, averages=1), runner=runner, metadata=metadata, **kwargs(predict)
        )
    run_campaign(bench, path, resume=True, **kwargs(predict))  # the readout comes from the file, not the caller
    meta, streams = read_campaign(path)
    samples = streams["samples"]
    np.testing.assert_array_equal(samples["readout_class"], readout.predict(samples["calibrated"]))
    np.testing.assert_array_equal(samples["measured_class"], np.argmax(samples["calibrated"], axis=1))
    comparison = summarize(streams, str(path), meta).readout
    assert comparison.excluded == 2 and comparison.trained.n == comparison.plain.n == 8
    held = ~np.isin([k.decode() if isinstance(k, bytes) else k for k in samples["key"]], fitted_on)
    assert comparison.trained.correct == int(np.sum(samples["readout_class"][held] == samples["label"][held]))
