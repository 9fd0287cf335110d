"""``labctl gui --sim``: a simulated bench served in-process, connected through the real drivers."""

from __future__ import annotations

from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QApplication

from labctl.cli import main
from labctl.design.designfile import Design, save_design
from labctl.gui.app import MainWindow
from tests.design import tinydata
from tests.tiny import tiny_design


def test_gui_sim_serves_a_bench_and_connects_to_it(qtbot, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split, stem, count in (("train", "train", 20), ("test", "t10k", 20)):
        images, labels = tinydata.synthetic_images(count, seed=1)
        tinydata.write_idx(data / f"{stem}-images-idx3-ubyte", images)
        tinydata.write_idx(data / f"{stem}-labels-idx1-ubyte", labels)
    tiny = tiny_design()
    design = Design(tiny.geometry, tiny.material, tiny.heights_m, tiny.layout, 1, str(data), [str(c) for c in range(10)])
    design_file = save_design(design, tmp_path / "tiny.h5")
    seen = {}

    def close_when_connected() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow) and widget.isVisible() and widget.session.bench is not None:
                seen["station"] = widget.session.station_path
                seen["identities"] = {n: s.identity for n, s in widget.session.bench.connection_state().items()}
                seen["dataset"] = len(widget.session.dataset.test_images)
                widget.close()
                return
        QTimer.singleShot(50, close_when_connected)

    QTimer.singleShot(50, close_when_connected)
    argv = ["gui", "--sim", "--design", str(design_file), "--time-scale", "0", "--seed", "3", "--settings", str(tmp_path / "s.ini")]
    assert main(argv) == 0
    assert seen["station"].name == "station.yaml" and not seen["station"].exists()  # served, then closed with the window
    assert "E8257D" in seen["identities"]["thz"] and "FW102C" in seen["identities"]["wheel"]
    assert seen["dataset"] == 20
    assert (tmp_path / "s.ini").is_file()
