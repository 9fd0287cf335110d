"""Input: the mask wheel's slots with a preview of each mask and the one in the beam, cassette
loading, and (for an SLM) the image shown now with a picker for any data-set image.

A campaign's ``LoadCassette`` prompt appears here as a ``CassetteDialog``. In simulation the
simulated operator has already loaded the masks and the dialog only confirms it, closing itself.
"""

from __future__ import annotations

from typing import Any

from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from labctl.gui.session import CassetteRequest, Session
from labctl.gui.widgets import StatusLine, pixmap

THUMB = 36
#: How long the confirmation of a cassette the simulated operator loaded stays up (ms, x time scale).
AUTO_CLOSE_MS = 1500


def read_slot(bench: Any) -> int | None:
    """The wheel slot in the beam (None for a projector without slots, an SLM)."""
    wheel = getattr(bench.projector, "wheel", None)
    return wheel.get_slot() if wheel is not None else None


class CassetteDialog(QDialog):
    """Asks the operator to load masks into slots (previews shown); Loaded or Cancel."""

    def __init__(
        self, slots: dict[int, str], message: str, session: Session, simulated: bool, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.setWindowTitle("Load cassette")
        self.slots = dict(slots)
        self.request: CassetteRequest | None = None  # set when a plan asked for this cassette
        layout = QVBoxLayout(self)
        intro = (
            "The simulated operator loaded this cassette:"
            if simulated
            else "Load these masks into the wheel, then press Loaded:"
        )
        layout.addWidget(QLabel(message or intro))
        if message:
            layout.addWidget(QLabel(intro))
        grid = QGridLayout()
        for row, (slot, key) in enumerate(sorted(self.slots.items())):
            preview = QLabel()
            try:
                if key:
                    preview.setPixmap(pixmap(session.mask_image(key), THUMB))
            except Exception as exc:  # a preview is a courtesy; the key is what matters
                preview.setText(f"(no preview: {exc})")
            grid.addWidget(QLabel(f"slot {slot}"), row, 0)
            grid.addWidget(QLabel(key or "empty (an open aperture)"), row, 1)
            grid.addWidget(preview, row, 2)
        layout.addLayout(grid)
        buttons = QDialogButtonBox()
        self.loaded_button = buttons.addButton("Loaded", QDialogButtonBox.AcceptRole)
        self.cancel_button = buttons.addButton("Cancel", QDialogButtonBox.RejectRole)
        if simulated:
            self.cancel_button.hide()
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class InputView(QWidget):
    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.dialog: CassetteDialog | None = None
        self.slot: int | None = None  # the wheel slot in the beam
        self.capacity: int | None = 0
        self.loaded: dict[int, str] = {}

        self.slots = QTableWidget(0, 3)
        self.slots.setHorizontalHeaderLabels(("slot", "mask", "preview"))
        self.slots.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.slots.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.slots.setSelectionMode(QAbstractItemView.SingleSelection)
        self.slots.verticalHeader().setDefaultSectionSize(THUMB + 4)
        self.slots.verticalHeader().hide()
        self.slots.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.slots.setMinimumHeight(self.slots.horizontalHeader().sizeHint().height() + 6 * (THUMB + 4) + 6)
        self.show_slot = QPushButton("Turn selected slot into the beam")
        self.cassette = QLineEdit()
        self.cassette.setPlaceholderText("mask keys for slots 1, 2, …  e.g. mnist5k/test/0, mnist5k/test/1")
        self.load_button = QPushButton("Load cassette…")
        wheel_box = QGroupBox("mask wheel")
        wheel_layout = QVBoxLayout(wheel_box)
        wheel_layout.addWidget(self.slots)
        wheel_layout.addWidget(self.show_slot)
        cassette_row = QHBoxLayout()
        cassette_row.addWidget(self.cassette)
        cassette_row.addWidget(self.load_button)
        wheel_layout.addLayout(cassette_row)

        self.beam_label = QLabel("in the beam: –")
        self.beam_image = QLabel()
        self.beam_image.setFixedSize(112, 112)
        self.beam_image.setToolTip("the mask in the beam; on an SLM, the image it shows now")
        beam_box = QGroupBox("in the beam")
        beam_layout = QVBoxLayout(beam_box)
        beam_layout.addWidget(self.beam_image)
        beam_layout.addWidget(self.beam_label)

        self.split = QComboBox()
        self.split.addItems(["test", "train"])
        self.index = QSpinBox()
        self.index.setRange(0, 999_999)
        self.pick_preview = QLabel()
        self.pick_preview.setFixedSize(84, 84)
        self.show_picked = QPushButton("Show in the beam")
        pick_box = QGroupBox("data-set image")
        pick_layout = QGridLayout(pick_box)
        pick_layout.addWidget(self.split, 0, 0)
        pick_layout.addWidget(self.index, 0, 1)
        pick_layout.addWidget(self.pick_preview, 1, 0)
        pick_layout.addWidget(self.show_picked, 1, 1)

        self.status = StatusLine()
        lower = QHBoxLayout()
        lower.addWidget(beam_box)
        lower.addWidget(pick_box)
        layout = QVBoxLayout(self)
        layout.addWidget(wheel_box)
        layout.addLayout(lower)
        layout.addWidget(self.status)

        self.show_slot.clicked.connect(self._show_selected_slot)
        self.load_button.clicked.connect(self._load_clicked)
        self.show_picked.clicked.connect(self._show_picked)
        self.split.currentIndexChanged.connect(self._preview_pick)
        self.index.valueChanged.connect(self._preview_pick)
        session.bench_changed.connect(self.refresh)
        session.beam_changed.connect(self._beam_changed)
        session.cassette_requested.connect(self._cassette_requested)
        session.plan_finished.connect(self._plan_finished)
        session.plan_state.connect(lambda *_: self._enable())
        self.poller = session.poller(read_slot, self._slot_read, 500, self.status.error, parent=self)
        self.refresh()

    # -- what is loaded and in the beam -------------------------------------------------------
    def key_of(self, name: str) -> str:
        """The data-set key of the picker's image: ``<data set>/<split>/<index>``."""
        return f"{name}/{self.split.currentText()}/{self.index.value()}"

    def refresh(self) -> None:
        """Ask the projector what it holds (on the instrument worker), then redraw the slots."""
        self._enable()
        if self.session.bench is None:
            self.fill(0, {})
            return
        self.session.call(
            lambda bench: (bench.projector.capacity(), bench.projector.loaded()),
            lambda answer: self.fill(*answer),
            self.status.error,
        )

    def fill(self, capacity: int | None, loaded: dict[int, str]) -> None:
        """Show ``capacity`` wheel slots (None: an SLM) holding ``loaded`` (slot -> key)."""
        self.capacity, self.loaded = capacity, dict(loaded)
        self.slots.setRowCount(capacity or 0)
        for row in range(capacity or 0):
            slot = row + 1
            key = loaded.get(slot, "")
            marker = " ◀ beam" if slot == self.slot else ""
            self.slots.setItem(row, 0, QTableWidgetItem(f"{slot}{marker}"))
            self.slots.setItem(row, 1, QTableWidgetItem(key or "(empty)"))
            preview = QLabel()
            if key:
                try:
                    preview.setPixmap(pixmap(self.session.mask_image(key), THUMB))
                except Exception:
                    preview.setText("?")
            self.slots.setCellWidget(row, 2, preview)
        self.show_picked.setText("Show on the SLM" if capacity is None else "Show in the beam")
        self._preview_pick()
        self._enable()

    def _enable(self) -> None:
        free = self.session.can_poll()
        for widget in (self.show_slot, self.load_button, self.show_picked):
            widget.setEnabled(free)

    def _slot_read(self, slot: int | None) -> None:
        if slot is None:
            return
        if slot != self.slot:
            self.slot = slot
            self.fill(self.capacity, self.loaded)
        self.session.set_beam(self.loaded.get(slot))

    def _beam_changed(self, key: str | None) -> None:
        self.beam_label.setText(f"in the beam: {key or 'open slot'}")
        self.beam_image.clear()
        if key:
            try:
                self.beam_image.setPixmap(pixmap(self.session.mask_image(key), 112))
            except Exception as exc:
                self.beam_label.setText(f"in the beam: {key} (no preview: {exc})")

    def _preview_pick(self) -> None:
        dataset = self.session.dataset
        if dataset is None:
            return
        try:
            self.pick_preview.setPixmap(pixmap(self.session.mask_image(self.key_of(dataset.name)), 84))
        except Exception as exc:
            self.pick_preview.setText("–")
            self.status.error(exc)

    # -- showing ------------------------------------------------------------------------------
    def _show(self, key: str) -> None:
        try:
            image = self.session.mask_image(key)
        except Exception:
            image = None  # a printed mask needs no image; the wheel only turns
        self.session.call(
            lambda bench: bench.projector.show(key, image),
            lambda _: (self.status.info(f"{key} in the beam"), self.session.set_beam(key), self.poller.poll()),
            self.status.error,
        )

    def _show_selected_slot(self) -> None:
        rows = self.slots.selectionModel().selectedRows()
        if not rows:
            self.status.error("select a slot first")
            return
        key = self.loaded.get(rows[0].row() + 1)
        if key is None:
            self.status.error(f"slot {rows[0].row() + 1} is empty; load a cassette first")
            return
        self._show(key)

    def _show_picked(self) -> None:
        if self.session.dataset is None:
            self.status.error("no data set loaded")
            return
        self._show(self.key_of(self.session.dataset.name))

    # -- cassettes ----------------------------------------------------------------------------
    def _load_clicked(self) -> None:
        keys = [key.strip() for key in self.cassette.text().split(",") if key.strip()]
        if not keys:
            self.status.error("type the mask keys for slots 1, 2, … (comma separated)")
            return
        slots = dict(enumerate(keys, start=1))
        simulated = self.session.simulated_loader() is not None
        self._open_dialog(slots, "", simulated, lambda ok: ok and self._record_cassette(slots))

    def _record_cassette(self, slots: dict[int, str]) -> None:
        self.session.load_cassette(
            slots,
            lambda _: (self.status.info(f"cassette of {len(slots)} masks loaded"), self.refresh()),
            self.status.error,
        )

    def _cassette_requested(self, request: CassetteRequest) -> None:
        """A plan asks for a cassette (its thread waits on ``request`` unless the simulation loaded it)."""

        def answered(loaded: bool) -> None:
            if not request.answered():
                request.answer(loaded)
            if request.loaded:
                self.fill(self.capacity, request.slots)

        self._open_dialog(request.slots, request.message.message, request.loaded_by_simulation, answered)
        self.dialog.request = request

    def _plan_finished(self, *_: Any) -> None:
        """A plan that ended (done, aborted) no longer waits for its cassette: close its prompt."""
        if self.dialog is not None and self.dialog.request is not None:
            self.dialog.reject()

    def _open_dialog(self, slots: dict[int, str], message: str, simulated: bool, answered: Any) -> None:
        if self.dialog is not None:
            self.dialog.done(QDialog.Accepted if simulated else QDialog.Rejected)
        dialog = CassetteDialog(slots, message, self.session, simulated, self)
        dialog.setWindowModality(Qt.WindowModal if not simulated else Qt.NonModal)
        dialog.finished.connect(lambda result: (answered(result == QDialog.Accepted), self._closed(dialog)))
        self.dialog = dialog
        dialog.open()
        if simulated:
            scale = self.session.sim.clock.time_scale if self.session.sim is not None else 1.0
            # a timer the dialog owns: if the dialog is closed and deleted first, the timer goes with it
            # (a free single shot would call accept on a deleted dialog)
            timer = QTimer(dialog)
            timer.setSingleShot(True)
            timer.timeout.connect(dialog.accept)
            timer.start(int(AUTO_CLOSE_MS * min(scale, 1.0)))

    def _closed(self, dialog: CassetteDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None
        dialog.deleteLater()
