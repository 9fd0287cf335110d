import numpy as np
import pytest

from labctl.design.designfile import load_design, relief_period_m, save_design
from labctl.design.training import TrainOptions, blank_design, check_resumable, train
from labctl.errors import ConfigError, DataError
from labctl.optics import Material

FAST = dict(batch_size=8, learning_rate=0.1, temperature=10.0)


def _blank(data, geometry, material=None):
    return blank_design(data, geometry, material or Material(), detector_size=3, input_scale=2, image_size=7)


def test_loss_falls_and_beats_chance(tiny_data, tiny_geometry):
    result = train(_blank(tiny_data, tiny_geometry), tiny_data, TrainOptions(epochs=4, **FAST), progress=False)
    history = result.provenance["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert result.provenance["test_accuracy"] > 0.3  # chance is 0.1
    period = relief_period_m(tiny_geometry.wavelength_m, result.material)
    assert np.all(result.heights_m >= 0) and np.all(result.heights_m < period)
    assert result.provenance["seed"] == 0 and result.provenance["software"].startswith("labctl ")


def test_same_seed_same_heights_other_seed_other_heights(tiny_data, tiny_geometry):
    options = TrainOptions(epochs=1, seed=5, max_train=40, **FAST)
    a = train(_blank(tiny_data, tiny_geometry), tiny_data, options, progress=False)
    b = train(_blank(tiny_data, tiny_geometry), tiny_data, options, progress=False)
    np.testing.assert_array_equal(a.heights_m, b.heights_m)
    c = train(
        _blank(tiny_data, tiny_geometry),
        tiny_data,
        TrainOptions(epochs=1, seed=6, max_train=40, **FAST),
        progress=False,
    )
    assert not np.allclose(a.heights_m, c.heights_m)


def test_resume_from_checkpoint_equals_uninterrupted_run(tiny_data, tiny_geometry, tmp_path):
    vaccinated = dict(
        vaccination_sigma_m=0.2e-3, vaccination_sigma_z_m=0.1e-3, vaccination_sigma_rotation_deg=1.0, **FAST
    )
    full = train(_blank(tiny_data, tiny_geometry), tiny_data, TrainOptions(epochs=2, **vaccinated), progress=False)
    path = tmp_path / "ckpt.h5"
    train(
        _blank(tiny_data, tiny_geometry),
        tiny_data,
        TrainOptions(epochs=1, **vaccinated),
        checkpoint=lambda d: save_design(d, path),
        progress=False,
    )
    checkpoint = load_design(path)
    assert checkpoint.training.epochs_done == 1
    more = TrainOptions(epochs=2, **vaccinated)
    resumed = train(
        check_resumable(checkpoint, _blank(tiny_data, tiny_geometry), more), tiny_data, more, progress=False
    )
    np.testing.assert_allclose(resumed.heights_m, full.heights_m, rtol=0, atol=1e-12)
    assert len(resumed.provenance["history"]) == 2


def test_resume_from_the_middle_of_an_epoch(tiny_data, tiny_geometry):
    options = TrainOptions(epochs=2, vaccination_sigma_m=0.2e-3, **FAST)
    saved = []
    full = train(
        _blank(tiny_data, tiny_geometry),
        tiny_data,
        options,
        checkpoint=saved.append,
        progress=False,
        checkpoint_every_s=0.0,
    )
    middle = [d for d in saved if d.training.epochs_done == 1 and d.training.batches_done == 4]
    assert len(middle) == 1 and len(saved) == 2 * 10  # 10 batches of 8 per epoch: 9 within + 1 at the end
    assert middle[0].provenance["history"][0]["epoch"] == 1 and len(middle[0].provenance["history"]) == 1
    resumed = train(middle[0], tiny_data, options, progress=False)
    np.testing.assert_allclose(resumed.heights_m, full.heights_m, rtol=0, atol=1e-12)
    for key in ("train_loss", "train_accuracy", "test_accuracy"):
        assert resumed.provenance["history"][1][key] == pytest.approx(full.provenance["history"][1][key])


def test_a_checkpoint_finalizes_into_the_shorter_run(tiny_data, tiny_geometry):
    saved = []
    train(
        _blank(tiny_data, tiny_geometry),
        tiny_data,
        TrainOptions(epochs=2, **FAST),
        checkpoint=saved.append,
        progress=False,
        checkpoint_every_s=0.0,
    )
    after_one = next(d for d in saved if d.training.epochs_done == 1 and d.training.batches_done == 0)
    one = TrainOptions(epochs=1, **FAST)
    finalized = train(
        check_resumable(after_one, _blank(tiny_data, tiny_geometry), one),
        tiny_data,
        one,
        progress=False,
        command="epochs 1",
    )
    short = train(_blank(tiny_data, tiny_geometry), tiny_data, one, progress=False)
    np.testing.assert_array_equal(finalized.heights_m, short.heights_m)
    assert finalized.provenance["command"] == "epochs 1"
    (mine,), (theirs,) = finalized.provenance["history"], short.provenance["history"]
    assert (mine["train_loss"], mine["test_accuracy"]) == (theirs["train_loss"], theirs["test_accuracy"])
    within_two = next(d for d in saved if d.training.epochs_done == 1 and d.training.batches_done == 3)
    with pytest.raises(ConfigError, match="at least 2"):
        check_resumable(within_two, _blank(tiny_data, tiny_geometry), one)


def test_resume_refuses_other_options_and_final_files(tiny_data, tiny_geometry, tmp_path):
    path = tmp_path / "ckpt.h5"
    done = train(
        _blank(tiny_data, tiny_geometry),
        tiny_data,
        TrainOptions(epochs=1, **FAST),
        checkpoint=lambda d: save_design(d, path),
        progress=False,
    )
    checkpoint = load_design(path)
    with pytest.raises(ConfigError, match="learning_rate"):
        check_resumable(
            checkpoint, _blank(tiny_data, tiny_geometry), TrainOptions(epochs=2, batch_size=8, learning_rate=0.3)
        )
    done.training = None
    with pytest.raises(DataError, match="no training state"):
        check_resumable(done, _blank(tiny_data, tiny_geometry), TrainOptions(epochs=2, **FAST))


def test_quantized_training_gives_printer_steps(tiny_data, tiny_geometry):
    step = 20e-6
    result = train(
        _blank(tiny_data, tiny_geometry),
        tiny_data,
        TrainOptions(epochs=1, quantize_step_m=step, max_train=40, **FAST),
        progress=False,
    )
    np.testing.assert_allclose(result.heights_m / step, np.round(result.heights_m / step), atol=1e-6)


def test_absorption_training_uses_the_lossy_model(tiny_data, tiny_geometry):
    lossy = Material(1.7227, 0.5)
    options = TrainOptions(epochs=1, max_train=40, **FAST)
    plain = train(_blank(tiny_data, tiny_geometry, lossy), tiny_data, options, progress=False)
    absorbing = train(
        _blank(tiny_data, tiny_geometry, lossy),
        tiny_data,
        TrainOptions(epochs=1, max_train=40, absorption=True, **FAST),
        progress=False,
    )
    assert absorbing.trained_with_absorption and not plain.trained_with_absorption
    assert absorbing.model().material.extinction == 0.5 and plain.model().material.extinction == 0.0
    assert not np.allclose(plain.heights_m, absorbing.heights_m)


def test_bad_options_and_setups_are_config_errors(tiny_data, tiny_geometry):
    with pytest.raises(ConfigError, match="lr_decay"):
        TrainOptions(lr_decay=1.5)
    with pytest.raises(ConfigError, match="epochs"):
        TrainOptions(epochs=0)
    with pytest.raises(ConfigError, match="input scale"):
        blank_design(tiny_data, tiny_geometry, Material(), detector_size=3, input_scale=5, image_size=28)
