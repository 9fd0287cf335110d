"""GUI fixtures: a simulated bench at time scale 0 for the tiny design, and the main window on it."""

from __future__ import annotations

import pytest
from PyQt5.QtCore import Qt

from labctl.design.datasets import Dataset
from labctl.gui.app import MainWindow, settings_at
from labctl.gui.session import Session, mask_lookup
from labctl.sim.bench import SimulatedBench
from tests.tiny import tiny_design, tiny_images


@pytest.fixture(scope="session")
def design():
    return tiny_design()


@pytest.fixture(scope="session")
def dataset():
    images, labels = tiny_images(30)
    return Dataset("tiny", images[:20], labels[:20], images, labels, [str(c) for c in range(10)])


@pytest.fixture
def sim(tmp_path, design, dataset):
    with SimulatedBench(design, tmp_path, time_scale=0, masks=mask_lookup(dataset)) as sim:
        yield sim


@pytest.fixture
def window(qtbot, tmp_path, design, dataset):
    """The main window with temporary settings; closed (bench shut down) at the end."""
    session = Session(design=design, dataset=dataset)
    window = MainWindow(session, settings_at(tmp_path / "settings.ini"))
    window.views["campaign"].open_reports = False
    qtbot.addWidget(window)
    window.show()
    yield window
    window.close()


def connect(qtbot, window, sim) -> None:
    """Type the station file and click Connect, as an operator does; wait for the bench.

    The session gets the simulated bench as its operator (cassettes load themselves), as ``--sim`` does.
    """
    window.session.sim = sim
    view = window.show_view("station")
    view.path.clear()
    qtbot.keyClicks(view.path, str(sim.station_path))
    qtbot.mouseClick(view.connect_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.session.bench is not None, timeout=15000)


def home_all(qtbot, window) -> None:
    """Click Home on every plate and wait until each has started homing (done at once at time scale 0)."""
    stages = window.show_view("stages")
    for box in stages.boxes.values():
        qtbot.mouseClick(box.home, Qt.LeftButton)
    qtbot.waitUntil(
        lambda: all(not box.status.is_error and box.status.text() == "homing" for box in stages.boxes.values()),
        timeout=5000,
    )


def numbers(text: str) -> float:
    """The number a label starts with (``"12.5000 mm ↔"`` -> 12.5); NaN while it shows none yet
    (``"–"`` before the first position arrives), so that a wait keeps waiting."""
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return float("nan")
