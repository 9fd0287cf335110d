"""``labctl report`` on a stored campaign, and its one-line errors."""

from __future__ import annotations

import json

from labctl.cli import main
from tests.campaign.test_report import stored_campaign


def test_report_command_prints_summary_json(tmp_path, capsys):
    path = tmp_path / "c.h5"
    stored_campaign(path)
    assert main(["report", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] == 40 and abs(out["accuracy_measured"] - 0.8) < 1e-9
    assert out["report_file"].endswith("report.html")


def test_report_command_missing_file_is_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("labctl: error:") and "nope.h5" in err[0]
