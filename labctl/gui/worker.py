"""The thread bridge: instrument work off the GUI thread, results back as Qt signals.

``Worker`` is one thread that runs jobs in order (an urgent job, the emergency stop, goes first);
a job's ``done``/``failed`` callbacks run back on the GUI thread. One worker serializes every
instrument call the GUI makes, because SCPI and serial drivers are not safe to share between
threads. ``Poller`` asks a worker to call something periodically, never queueing a second call
while one is still out. ``PlanThread`` runs a procedure (calibration, alignment, a campaign)
with its ``Runner`` in a thread of its own, and hands the runner's messages to the GUI in
batches, so that a plan answering thousands of messages a second cannot flood the event loop.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PyQt5.QtCore import QObject, QThread, QTimer, pyqtSignal

log = logging.getLogger("labctl.gui")

Callback = Callable[[Any], None]


@dataclass(order=True)
class Job:
    """One call for a worker. Ordered by (priority, sequence): urgent jobs first, then FIFO."""

    priority: int
    seq: int
    fn: Callable[[], Any] = field(compare=False)
    done: Callback | None = field(default=None, compare=False)
    failed: Callback | None = field(default=None, compare=False)


class Worker(QThread):
    """Runs submitted jobs one after another in its own thread (see the module docstring)."""

    job_done = pyqtSignal(object, object)  # (job, result), delivered on the GUI thread
    job_failed = pyqtSignal(object, object)  # (job, exception)

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self.setObjectName(name)
        self._queue: queue.PriorityQueue[Job] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._busy = 0  # jobs submitted and not yet delivered (read on the GUI thread)
        self._stopped = False  # after stop(), late results are dropped: their views may be gone
        self.job_done.connect(self._deliver_done)
        self.job_failed.connect(self._deliver_failed)

    def submit(
        self, fn: Callable[[], Any], done: Callback | None = None, failed: Callback | None = None, urgent: bool = False
    ) -> Job:
        """Queue ``fn``; ``done(result)`` or ``failed(exception)`` is called on the GUI thread."""
        job = Job(0 if urgent else 1, next(self._seq), fn, done, failed)
        self._busy += 1
        self._queue.put(job)
        return job

    def pending(self) -> int:
        """Jobs submitted whose callbacks have not run yet."""
        return self._busy

    def run(self) -> None:
        while True:
            job = self._queue.get()
            if job.fn is None:  # the stop sentinel
                return
            try:
                result = job.fn()
            except Exception as exc:  # every failure goes back to the view that asked
                self.job_failed.emit(job, exc)
            else:
                self.job_done.emit(job, result)

    def stop(self, timeout_ms: int = 5000) -> None:
        """Finish the jobs already queued, then end the thread."""
        if self.isRunning():
            self._queue.put(Job(2, next(self._seq), None))  # type: ignore[arg-type]
            self.wait(timeout_ms)
        self._stopped = True

    def _deliver_done(self, job: Job, result: Any) -> None:
        self._busy -= 1
        if job.done is not None and not self._stopped:
            job.done(result)

    def _deliver_failed(self, job: Job, exc: Exception) -> None:
        self._busy -= 1
        if self._stopped:
            log.error("%s", exc)
        elif job.failed is not None:
            job.failed(exc)
        else:
            log.error("%s", exc)


class Poller(QObject):
    """Every ``interval_ms``, submits the call ``make()`` returns (``None``: not now); one call at a time."""

    def __init__(
        self,
        worker: Worker,
        make: Callable[[], Callable[[], Any] | None],
        done: Callback,
        interval_ms: int,
        failed: Callback | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self._worker = worker
        self._make = make
        self._done = done
        self._failed = failed
        self._out = False
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.poll)

    def start(self) -> None:
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def poll(self) -> None:
        """Ask now, unless a call is still out or there is nothing to ask."""
        if self._out:
            return
        call = self._make()
        if call is None:
            return
        self._out = True
        self._worker.submit(call, self._answered, self._refused)

    def _answered(self, result: Any) -> None:
        self._out = False
        self._done(result)

    def _refused(self, exc: Exception) -> None:
        self._out = False
        if self._failed is not None:
            self._failed(exc)


class PlanThread(QThread):
    """Runs ``call(runner)`` in its own thread; streams the runner's messages in batches.

    ``messages_ready`` fires when the batch goes from empty to non-empty; the GUI takes the
    whole batch with ``drain()``. ``plan_finished(result, error)`` fires once at the end.
    """

    messages_ready = pyqtSignal()
    plan_finished = pyqtSignal(object, object)

    def __init__(self, runner: Any, call: Callable[[Any], Any], parent: QObject | None = None):
        super().__init__(parent)
        self.runner = runner
        self._call = call
        self._batch: deque[tuple[Any, Any]] = deque()
        self._lock = threading.Lock()
        self._flagged = False
        runner.subscribe(self._listen)

    def _listen(self, msg: Any, answer: Any) -> None:  # plan thread
        with self._lock:
            self._batch.append((msg, answer))
            if self._flagged:
                return
            self._flagged = True
        self.messages_ready.emit()

    def drain(self) -> list[tuple[Any, Any]]:
        """Every (message, answer) since the last drain, oldest first."""
        with self._lock:
            batch = list(self._batch)
            self._batch.clear()
            self._flagged = False
        return batch

    def run(self) -> None:
        try:
            result = self._call(self.runner)
        except BaseException as exc:  # reported to the GUI, which shows it where the plan was started
            self.plan_finished.emit(None, exc)
        else:
            self.plan_finished.emit(result, None)
