"""The axis base after a lost or garbled answer: questions asked again, moves never blindly repeated."""

from __future__ import annotations

import pytest

from labctl.drivers.axis import AxisBase
from labctl.drivers.retry import retries
from labctl.errors import GarbledReply, InstrumentTimeout


class FlakyAxis(AxisBase):
    """An in-memory stage whose link loses the answers the test says it loses."""

    def __init__(self, lose: dict[str, int], move_arrives: bool = True):
        super().__init__("flaky", (0.0, 0.025), poll_interval_s=0.0)
        self.lose = dict(lose)  # call name -> how many of its answers are lost
        self.move_arrives = move_arrives
        self.position = 0.0
        self.sent: list[float] = []

    def _answer_lost(self, call: str) -> None:
        if self.lose.get(call, 0) > 0:
            self.lose[call] -= 1
            raise (GarbledReply if call == "position" else InstrumentTimeout)("flaky", f"{call} answer lost")

    def _hw_position_m(self) -> float:
        self._answer_lost("position")
        return self.position

    def _hw_move_to(self, position_m: float) -> None:
        self.sent.append(position_m)
        if self.move_arrives or len(self.sent) > 1:
            self.position = position_m
        self._answer_lost("move")

    def _hw_is_moving(self) -> bool:
        self._answer_lost("moving")
        return False

    def _hw_home(self) -> None:
        self.position = 0.0

    def _hw_stop(self) -> None:
        self._answer_lost("stop")


def test_questions_are_asked_again_up_to_three_times():
    before = retries["flaky"]
    axis = FlakyAxis({"position": 2, "moving": 2, "stop": 2})
    assert axis.position_m() == 0.0 and axis.is_moving() is False
    axis.stop()
    assert retries["flaky"] - before == 6
    with pytest.raises(GarbledReply):
        FlakyAxis({"position": 3}).position_m()


def test_a_move_whose_reply_is_lost_but_which_arrived_is_not_sent_again():
    axis = FlakyAxis({"move": 1}, move_arrives=True)
    axis.move_to(0.01)
    assert axis.sent == [0.01] and axis.position == 0.01


def test_a_move_that_did_not_arrive_is_sent_once_more_after_asking():
    axis = FlakyAxis({"move": 1}, move_arrives=False)
    axis.move_to(0.01)
    assert axis.sent == [0.01, 0.01] and axis.position == 0.01
    axis = FlakyAxis({"move": 2}, move_arrives=False)
    with pytest.raises(InstrumentTimeout):  # lost twice: said, not sent a third time
        axis.move_to(0.01)
    assert axis.sent == [0.01, 0.01]
