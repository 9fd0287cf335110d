"""``labctl gui``: ``--sim`` serves a simulated bench in-process; ``--station`` connects a station file.

Both run the real event loop; a timer closes the window once it is connected and has loaded the
design's data set.
"""

from __future__ import annotations

import time

import pytest
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QApplication

from labctl.cli import main
from labctl.design.designfile import Design, save_design
from labctl.gui.app import MainWindow
from labctl.sim.bench import SimulatedBench
from tests.design import tinydata
from tests.tiny import tiny_design


@pytest.fixture
def design_file(tmp_path):
    """The tiny design as a design file whose data set is a directory of IDX files."""
    data = tmp_path / "data"
    data.mkdir()
    for stem in ("train", "t10k"):
        images, labels = tinydata.synthetic_images(20, seed=1)
        tinydata.write_idx(data / f"{stem}-images-idx3-ubyte", images)
        tinydata.write_idx(data / f"{stem}-labels-idx1-ubyte", labels)
    tiny = tiny_design()
    design = Design(
        tiny.geometry, tiny.material, tiny.heights_m, tiny.layout, 1, str(data), [str(c) for c in range(10)]
    )
    return save_design(design, tmp_path / "tiny.h5")


def close_when_ready(seen: dict) -> None:
    """Note what the window shows once connected with a data set, then close it (ends the event loop).

    A window that is not ready within a minute is closed as it is, so a broken connection fails
    the test instead of leaving its event loop running.
    """
    deadline = seen.setdefault("deadline", time.monotonic() + 60)
    for widget in QApplication.topLevelWidgets():
        session = getattr(widget, "session", None)
        if (
            isinstance(widget, MainWindow)
            and widget.isVisible()
            and session.bench is not None
            and session.dataset is not None
        ):
            seen["station"] = session.station_path
            seen["identities"] = {n: s.identity for n, s in session.bench.connection_state().items()}
            seen["dataset"] = len(session.dataset.test_images)
            seen["design"] = session.design is not None
            widget.close()
            return
    if time.monotonic() > deadline:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow):
                widget.close()
        return
    QTimer.singleShot(50, lambda: close_when_ready(seen))


def test_gui_sim_serves_a_bench_and_connects_to_it(qtbot, tmp_path, design_file):
    seen: dict = {}
    QTimer.singleShot(50, lambda: close_when_ready(seen))
    argv = [
        "gui",
        "--sim",
        "--design",
        str(design_file),
        "--time-scale",
        "0",
        "--seed",
        "3",
        "--settings",
        str(tmp_path / "s.ini"),
    ]
    assert main(argv) == 0
    assert (
        seen["station"].name == "station.yaml" and not seen["station"].exists()
    )  # served, then closed with the window
    assert "E8257D" in seen["identities"]["thz"] and "FW102C" in seen["identities"]["wheel"]
    assert seen["dataset"] == 20 and seen["design"]
    assert (tmp_path / "s.ini").is_file()


def test_gui_sim_serves_an_slm_bench_whose_panel_and_window_live_on_the_gui_thread(qtbot, tmp_path, design_file):
    """``--projector slm``: the instrument worker serves the bench and opens the SLM window; both the
    virtual panel and the window are made on the GUI thread while its event loop runs."""
    seen: dict = {}
    QTimer.singleShot(50, lambda: close_when_ready(seen))
    argv = ["gui", "--sim", "--design", str(design_file), "--time-scale", "0", "--projector", "slm"]
    assert main([*argv, "--settings", str(tmp_path / "s.ini")]) == 0
    assert seen["identities"]["slm"].startswith("SLM window on screen 0") and "wheel" not in seen["identities"]
    assert not any(w.isVisible() for w in QApplication.topLevelWidgets())  # the SLM window closed with the GUI


def test_gui_station_connects_and_loads_the_design_the_station_names(qtbot, tmp_path, design_file):
    from labctl.design.designfile import load_design

    with SimulatedBench(load_design(design_file), tmp_path, time_scale=0, design_path=design_file) as sim:
        seen: dict = {}
        QTimer.singleShot(50, lambda: close_when_ready(seen))
        assert main(["gui", "--station", str(sim.station_path), "--settings", str(tmp_path / "s.ini")]) == 0
        assert seen["station"] == sim.station_path
        assert seen["design"] and seen["dataset"] == 20
        assert not sim.source.output_on  # closing the window shut the bench down


@pytest.mark.parametrize(
    "environ, refused",
    [
        ({}, True),  # a server session: Qt would abort the process
        ({"DISPLAY": ":0"}, False),
        ({"WAYLAND_DISPLAY": "wayland-0"}, False),
        ({"QT_QPA_PLATFORM": "offscreen"}, False),
    ],
)
def test_no_screen_is_one_line_not_an_abort(environ, refused):
    from labctl.cli.gui import check_display
    from labctl.errors import ConfigError

    if refused:
        with pytest.raises(ConfigError, match="QT_QPA_PLATFORM=offscreen"):
            check_display(environ, "linux")
    else:
        check_display(environ, "linux")
    check_display({}, "win32")  # elsewhere Qt finds its own screen


def test_a_bad_station_file_is_refused_before_a_window_opens(tmp_path, capsys):
    path = tmp_path / "bench.yaml"
    path.write_text("instruments: [\n")
    assert main(["gui", "--station", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"labctl: error: {path}:") and "not valid YAML" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "extra, named",
    [(["--projector", "slm"], "--projector"), (["--seed", "3", "--truth", "realistic"], "--seed, --truth")],
)
def test_simulated_bench_options_without_sim_are_refused_not_ignored(tmp_path, capsys, extra, named):
    path = tmp_path / "bench.yaml"
    path.write_text("instruments: [\n")  # never read: the options are refused first
    assert main(["gui", "--station", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"labctl: error: labctl gui: {named} describe") and "add --sim, or drop them" in err
    assert err.count("\n") == 1
