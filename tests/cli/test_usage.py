"""Every command group answers an incomplete command as argparse does: usage on stderr, exit 2."""

from __future__ import annotations

import argparse

import pytest

from labctl.cli import build_parser, main


def command_groups() -> list[list[str]]:
    """``[]`` and every command that takes a subcommand, found in the parser (so new ones are covered)."""
    groups: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                groups.append(prefix)
                for name, sub in action.choices.items():
                    walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return groups


@pytest.mark.parametrize("argv", command_groups(), ids=lambda argv: " ".join(argv) or "labctl")
def test_an_incomplete_command_prints_usage_on_stderr_and_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    out, err = capsys.readouterr()
    assert caught.value.code == 2 and out == ""
    assert err.startswith("usage: labctl") and "error: the following arguments are required" in err
