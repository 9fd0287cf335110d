"""Run a plan as data: feed it scripted answers and collect the steps it asks for.

    steps = collect(my_plan(...), answers={ReadDetectors: fake_reading})

No bench, no runner: what a plan would do is a list you can assert on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from labctl.plans.messages import Msg, Plan


def collect(
    plan: Plan,
    answers: Mapping[type, Any | Callable[[Msg], Any]] | None = None,
    limit: int = 100_000,
) -> tuple[list[Msg], Any]:
    """Drive ``plan`` to its end; return (the messages it yielded, its return value).

    ``answers`` maps a message type to the value to send back (or a function of the message).
    Unlisted types are answered with None. ``limit`` guards against a plan that never ends.
    """
    answers = answers or {}
    steps: list[Msg] = []
    try:
        msg = next(plan)
        while True:
            steps.append(msg)
            if len(steps) > limit:
                raise RuntimeError(f"plan yielded more than {limit} steps")
            answer = answers.get(type(msg))
            msg = plan.send(answer(msg) if callable(answer) else answer)
    except StopIteration as stop:
        return steps, stop.value
