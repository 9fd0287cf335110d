"""The campaign report: PNG figures and one self-contained HTML page (figures embedded).

Figures: both confusion matrices side by side; per-class detector energy distributions measured
and predicted; measured against predicted normalized energies; drift of the total signal and the
darks over the campaign.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from labctl.campaign.analysis import CampaignSummary, summarize
from labctl.campaign.store import read_campaign
from labctl.errors import DataError
from labctl.paths import made_folders


def _matrix(ax: Any, matrix: np.ndarray, title: str, fmt: str, xlabel: str, ylabel: str) -> None:
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(matrix.shape[0]))
    if matrix.size <= 100:
        for (r, c), value in np.ndenumerate(matrix):
            ax.text(
                c,
                r,
                format(value, fmt),
                ha="center",
                va="center",
                fontsize=7,
                color="w" if value < matrix.max() / 2 else "k",
            )
    plt.colorbar(image, ax=ax, fraction=0.046)


def figures(summary: CampaignSummary, out_dir: Path) -> dict[str, Path]:
    """Write the report's PNGs into ``out_dir``; return name -> path."""
    out: dict[str, Path] = {}

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    _matrix(axes[0], summary.confusion_measured, f"bench: {summary.measured}", "d", "measured class", "true class")
    _matrix(
        axes[1], summary.confusion_simulated, f"simulation: {summary.simulated}", "d", "simulated class", "true class"
    )
    fig.tight_layout()
    out["confusion"] = out_dir / "confusion.png"
    fig.savefig(out["confusion"], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    _matrix(axes[0], summary.class_energy_measured, "measured energy share", ".2f", "detector", "true class")
    _matrix(axes[1], summary.class_energy_simulated, "simulated energy share", ".2f", "detector", "true class")
    fig.tight_layout()
    out["energies"] = out_dir / "class_energies.png"
    fig.savefig(out["energies"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(summary.predicted_normalized.ravel(), summary.measured_normalized.ravel(), s=6, alpha=0.5)
    top = max(summary.predicted_normalized.max(), summary.measured_normalized.max(), 1e-9)
    ax.plot([0, top], [0, top], "k--", lw=1)
    ax.set_xlabel("simulated energy share")
    ax.set_ylabel("measured energy share")
    ax.set_title(f"per detector, per sample (r = {summary.energy_correlation:.3f})")
    fig.tight_layout()
    out["scatter"] = out_dir / "measured_vs_simulated.png"
    fig.savefig(out["scatter"], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    t0 = min([summary.timestamps.min(), *summary.dark_timestamps.tolist()]) if summary.timestamps.size else 0.0
    axes[0].plot(summary.timestamps - t0, summary.total_signal, ".", ms=3)
    axes[0].set_ylabel("total calibrated signal")
    axes[0].set_title("drift over the campaign")
    if summary.darks.size:
        for channel in range(summary.darks.shape[1]):
            axes[1].plot(
                summary.dark_timestamps - t0, summary.darks[:, channel] * 1e3, ".-", ms=3, lw=0.8, label=str(channel)
            )
        axes[1].legend(ncol=10, fontsize=6, title="detector", title_fontsize=7)
    axes[1].set_ylabel("dark (mV)")
    axes[1].set_xlabel("time since start (s)")
    fig.tight_layout()
    out["drift"] = out_dir / "drift.png"
    fig.savefig(out["drift"], dpi=110)
    plt.close(fig)
    return out


def _embed(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def write_report(campaign_file: str | Path, out_dir: str | Path | None = None) -> tuple[Path, CampaignSummary]:
    """Build the report of a stored campaign; return (HTML path, summary)."""
    campaign_file = Path(campaign_file)
    if not campaign_file.exists():
        raise DataError(f"{campaign_file}: no such campaign file")
    metadata, streams = read_campaign(campaign_file)
    summary = summarize(streams, source=str(campaign_file), metadata=metadata)
    out_dir = Path(out_dir) if out_dir else campaign_file.with_name(campaign_file.stem + "_report")
    with made_folders(out_dir):  # a report that fails leaves no empty folder behind
        return _write_page(campaign_file, metadata, summary, out_dir), summary


def _write_page(campaign_file: Path, metadata: dict, summary: CampaignSummary, out_dir: Path) -> Path:
    """Figures, summary.json and the self-contained report.html in ``out_dir``; the page's path."""
    pngs = figures(summary, out_dir)
    rows = {
        **dict(summary.score_rows()),
        "complete": metadata.get("complete"),
        "partial": "yes: read from the journal (a campaign was writing the file, or was interrupted)"
        if metadata.get("partial")
        else "no",
        "design": metadata.get("design", {}).get("path")
        if isinstance(metadata.get("design"), dict)
        else metadata.get("design"),
        "software": metadata.get("software_version"),
        "command": metadata.get("command"),
    }
    table = "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    images = "\n".join(
        f'<h2>{html.escape(name)}</h2><img alt="{name}" src="{_embed(path)}">' for name, path in pngs.items()
    )
    meta = html.escape(json.dumps(metadata, indent=2, default=str))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>labctl campaign report: {html.escape(campaign_file.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} th{{text-align:left;padding-right:2em}}
img{{max-width:100%}} pre{{background:#f4f4f4;padding:1em;overflow:auto;font-size:12px}}</style></head>
<body><h1>Campaign report: {html.escape(campaign_file.name)}</h1>
<table>{table}</table>
{images}
<h2>metadata</h2><pre>{meta}</pre>
</body></html>
"""
    html_path = out_dir / "report.html"
    html_path.write_text(page)
    (out_dir / "summary.json").write_text(json.dumps(summary.to_json(), indent=2))
    return html_path
