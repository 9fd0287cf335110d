"""Screenshots of every GUI view against the simulated bench, into ``docs/screenshots/*.png``.

The main window runs offscreen against a simulated bench served in-process (real drivers over
ptys and TCP, time scale 0) and is driven the way an operator would: connect, home, calibrate,
align (when ``labctl.align`` offers it), load a cassette, show a mask, run a short campaign.
Each view's dock is grabbed once it shows something worth seeing; ``window.png`` is the whole
window.

    python scripts/screenshots.py [--design mnist5k] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt5.QtWidgets import QApplication

from labctl.design.datasets import load_dataset
from labctl.design.designfile import load_design
from labctl.design.shipped import resolve_design
from labctl.gui.app import MainWindow, settings_at
from labctl.gui.session import Session
from labctl.sim.truth import Truth

ROOT = Path(__file__).resolve().parents[1]


def wait(app: QApplication, condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.002)


def settle(app: QApplication, seconds: float = 0.3) -> None:
    """Let the views poll and repaint for a moment."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.002)


class Shooter:
    def __init__(self, app: QApplication, window: MainWindow, out: Path):
        self.app, self.window, self.out = app, window, out
        self.saved: list[Path] = []

    def shoot(self, name: str, size: tuple[int, int] | None = None) -> None:
        """Grab view ``name``'s dock (``size``: float it at that size for the picture) or the window."""
        widget = self.window if name == "window" else self.window.docks[name]
        if name != "window":
            self.window.show_view(name)
        if size is not None:
            widget.setFloating(True)
            widget.resize(*size)
        settle(self.app)
        path = self.out / f"{name}.png"
        if not widget.grab().save(str(path)):
            raise SystemExit(f"screenshots: could not write {path}")
        self.saved.append(path)
        if size is not None:
            widget.setFloating(False)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="mnist5k", help="shipped design name or design file (default: mnist5k)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--samples-per-class", type=int, default=2, help="size of the campaign shown")
    parser.add_argument("--check", type=int, default=12, help="check images scored before and after the alignment")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated bench's hidden truths")
    parser.add_argument(
        "--offset-sigma-mm", type=float, default=0.2,
        help="sigma of the hidden plate offsets (mm); 0.2 lies in the model alignment's capture range from a cold "
        "start (at the simulator's 0.5 its first fit did not converge for seed 0 when these pictures were made)",
    )  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    design_path = resolve_design(args.design)
    design = load_design(design_path)
    dataset = load_dataset(design.dataset)
    folder = tempfile.TemporaryDirectory(prefix="labctl-screenshots-")
    session = Session(design=design, dataset=dataset)
    window = MainWindow(session, settings_at(Path(folder.name) / "settings.ini"))
    window.views["campaign"].open_reports = False
    window.resize(1500, 950)
    window.show()
    shooter = Shooter(app, window, args.out)
    truth = Truth(offset_sigma_m=args.offset_sigma_mm * 1e-3)
    session.start_sim(design, seed=args.seed, time_scale=0.0, design_path=design_path, truth=truth)
    wait(app, lambda: session.bench is not None, 60, "the simulated bench")

    # Station and stages: home every axis, then put the plates where the design wants them.
    done: list[Any] = []
    session.call(lambda bench: [a.home() for p in bench.plates.values() for a in p.axes().values()], done.append)
    wait(app, lambda: done, 120, "homing")
    session.call(lambda bench: bench.move_to_nominal(timeout_s=60), done.append)
    wait(app, lambda: len(done) == 2, 120, "the move to nominal")
    shooter.shoot("station")
    shooter.shoot("stages")

    source = window.views["source"]
    source.on_button.click()
    wait(app, lambda: source.output.text() == "ON", 10, "the source")
    shooter.shoot("source")

    # The order of docs/calibration.md: darks and stages, then alignment, then gains and source.
    calibration = window.views["calibration"]

    def calibrate(steps: tuple[str, ...]) -> None:
        for step, box in calibration.steps.items():
            box.setChecked(step in steps)
        calibration.report = None
        calibration.run_button.click()
        wait(app, lambda: session.plan is None and calibration.report is not None, 600, f"calibrating {steps}")

    calibrate(("darks", "stages"))
    alignment = window.views["alignment"]
    alignment.check.setValue(args.check)
    alignment.start.click()
    wait(
        app,
        lambda: session.plan is None and (alignment.result is not None or alignment.status.is_error),
        900,
        "the alignment",
    )
    shooter.shoot("alignment")
    calibrate(("gains", "source"))
    shooter.shoot("calibration")

    # Input and detectors: a cassette of six test digits, the third in the beam, the source on
    # again (every procedure leaves it off).
    source.on_button.click()
    wait(app, lambda: source.output.text() == "ON", 10, "the source")
    inputs = window.views["input"]
    inputs.cassette.setText(", ".join(f"{dataset.name}/test/{i}" for i in range(6)))
    inputs.load_button.click()
    wait(app, lambda: inputs.loaded.get(6) is not None, 30, "the cassette")
    inputs.slots.selectRow(2)
    inputs.show_slot.click()
    wait(app, lambda: session.beam_key == f"{dataset.name}/test/2", 30, "the wheel")
    detectors = window.views["detectors"]
    detectors.units.setCurrentText("calibrated")
    detectors.scale.setCurrentText("normalized")
    wait(app, lambda: detectors.predicted is not None and detectors.updates > 20, 120, "the twin's prediction")
    shooter.shoot("input")
    shooter.shoot("detectors")

    campaign = window.views["campaign"]
    campaign.selection.setCurrentText("count_per_class")
    campaign.selection_value.setText(str(args.samples_per_class))
    campaign.start.click()
    wait(app, lambda: session.plan is None and campaign.samples > 0, 1800, "the campaign")
    shooter.shoot("campaign")
    shooter.shoot("log", size=(1400, 420))
    source.on_button.click()  # the campaign switched the source off at its end
    wait(app, lambda: source.output.text() == "ON", 10, "the source")
    window.show_view("detectors")
    window.show_view("input")
    shooter.shoot("window")
    window.close()
    folder.cleanup()


if __name__ == "__main__":
    main()
