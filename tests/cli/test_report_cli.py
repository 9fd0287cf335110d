"""``labctl report`` on a stored campaign, and its one-line errors."""

from __future__ import annotations

import json

from labctl.cli import main
from labctl.stats import wilson_interval
from tests.campaign.test_report import stored_campaign


def test_report_command_prints_summary_json(tmp_path, capsys):
    path = tmp_path / "c.h5"
    stored_campaign(path)
    assert main(["report", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] == 40 and abs(out["accuracy_measured"] - 0.8) < 1e-9
    assert out["accuracy_measured_ci"] == list(wilson_interval(32, 40))
    assert out["accuracy_simulated_ci"] == list(wilson_interval(40, 40))
    assert abs(out["mcnemar_p"] - 2 / 256) < 1e-12 and out["only_simulated_right"] == 8
    assert out["report_file"].endswith("report.html")


def test_report_command_prints_intervals_and_paired_test(tmp_path, capsys):
    path = tmp_path / "c.h5"
    stored_campaign(path)
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "80.0 % [65.2, 89.5] (n=40)" in out
    assert "McNemar p = 0.00781 (only bench right: 0, only twin right: 8; exact)" in out


def test_report_command_missing_file_is_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("labctl: error:") and "nope.h5" in err[0]
