"""The GUI's campaigns go through the one set-up (``labctl.campaign.setup``), as ``labctl run`` does:
a resumed campaign keeps its own split, the twin predicts for where the plates are now, and a
design file changed under a campaign refuses the resume."""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import Qt

from labctl.campaign.store import journal_path, read_campaign
from labctl.design.datasets import Dataset
from labctl.design.designfile import load_design, save_design
from labctl.gui.session import mask_lookup
from labctl.sim.bench import SimulatedBench
from labctl.twin import Twin
from tests.cli.campaign_bench import served_bench, write_alignment_then_move
from tests.gui.conftest import connect, home_all
from tests.gui.test_procedures import start_campaign
from tests.tiny import tiny_images


def stop_after_first_cassette(qtbot, window, sim, view) -> None:
    """A person loads the first cassette; the emergency stop comes while the second is asked for."""
    inputs = window.views["input"]
    qtbot.waitUntil(lambda: inputs.dialog is not None, timeout=10000)
    sim.load_masks(inputs.dialog.slots)
    qtbot.mouseClick(inputs.dialog.loaded_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: inputs.dialog is not None and inputs.dialog.slots != sim.wheel.masks, timeout=20000)
    qtbot.mouseClick(window.estop, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.session.plan is None, timeout=10000)
    assert 0 < view.samples < 10 and journal_path(view.file).exists()


def finish(qtbot, window, view) -> None:
    window.session.auto_operator = True
    qtbot.mouseClick(view.resume_file, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.session.plan is None and ("finished" in view.status.text() or "failed" in view.status.text()),
                    timeout=30000)  # fmt: skip


def test_a_train_split_campaign_resumed_from_the_gui_measures_and_labels_train_images(qtbot, window, design, tmp_path):
    images, labels = tiny_images(40, seed=5)
    # train and test differ at every index, so a resume that mixed them up would show
    data = Dataset("tiny", images[20:], labels[20:], images[:20], (labels[:20] + 3) % 10, [str(c) for c in range(10)])
    window.session.dataset = data
    (tmp_path / "bench").mkdir()
    with SimulatedBench(design, tmp_path / "bench", time_scale=0, masks=mask_lookup(data)) as sim:
        connect(qtbot, window, sim)
        home_all(qtbot, window)
        window.session.auto_operator = False
        view = start_campaign(qtbot, window, split="train")
        stop_after_first_cassette(qtbot, window, sim, view)
        finish(qtbot, window, view)
        assert "finished" in view.status.text(), view.status.text()
    metadata, streams = read_campaign(view.file)
    samples = streams["samples"]
    assert metadata["complete"] and metadata["spec"]["split"] == "train" and len(samples["seq"]) == 10
    index = samples["index"]
    assert all(key.startswith("tiny/train/") for key in samples["key"])
    np.testing.assert_array_equal(samples["label"], data.train_labels[index])
    np.testing.assert_allclose(samples["predicted"], Twin(design).predict(data.train_images[index]), rtol=1e-5)


def test_a_gui_campaign_predicts_for_where_the_stages_are_now_not_where_the_alignment_left_them(
    qtbot, window, design, sim
):
    connect(qtbot, window, sim)
    home_all(qtbot, window)
    moved = []
    window.session.call(lambda bench: bench.move_to_nominal(timeout_s=10), lambda _: moved.append(True))
    qtbot.waitUntil(lambda: bool(moved), timeout=10000)
    truth = sim.world.plate_offsets_m()
    write_alignment_then_move(sim.world, window.session.bench.calibration_dir)  # the stages moved 0.2 mm in x since
    window.session.calibration_written()
    view = start_campaign(qtbot, window)
    qtbot.waitUntil(lambda: window.session.plan is None and "finished" in view.status.text(), timeout=30000)
    metadata, streams = read_campaign(view.file)
    np.testing.assert_allclose(metadata["twin"]["offsets_m"], truth, atol=1e-9)
    images = window.session.dataset.test_images[streams["samples"]["index"]]
    expected = Twin(design, offsets_m=truth).predict(images)
    np.testing.assert_allclose(streams["samples"]["predicted"], expected, rtol=1e-4)


def test_a_design_file_changed_under_a_campaign_refuses_the_gui_resume(qtbot, window, tmp_path):
    with served_bench(tmp_path) as sim:  # its station file names the design file tiny.h5
        window.session.design = window.session.dataset = (
            None  # the station's design and data, as `labctl gui --station`
        )
        connect(qtbot, window, sim)
        qtbot.waitUntil(lambda: window.session.dataset is not None, timeout=15000)
        home_all(qtbot, window)
        window.session.auto_operator = False
        view = start_campaign(qtbot, window)
        stop_after_first_cassette(qtbot, window, sim, view)
        metadata, _ = read_campaign(view.file)
        design_file = tmp_path / "tiny.h5"
        assert metadata["design"]["path"] == str(design_file.resolve()) and metadata["design"]["name"] == "tiny"
        changed = load_design(design_file)
        changed.heights_m = changed.heights_m[::-1].copy()
        design_file.unlink()
        save_design(changed, design_file)
        qtbot.mouseClick(view.resume_file, Qt.LeftButton)
        assert "changed since the campaign started" in view.status.text() and str(design_file) in view.status.text()
        assert window.session.plan is None and journal_path(view.file).exists()  # nothing ran, nothing lost
