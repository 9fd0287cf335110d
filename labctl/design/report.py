"""Evaluation and design summaries as plain dicts (for --json) and as readable text tables."""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.design.designfile import Design, geometry_summary
from labctl.design.evaluation import Evaluation


def evaluation_dict(
    source: str,
    design: Design,
    dataset: str,
    evaluation: Evaluation,
    settings: dict[str, Any],
    misalignment: np.ndarray | None = None,
) -> dict[str, Any]:
    """Everything ``labctl design evaluate`` reports, JSON-ready."""
    confusion = evaluation.confusion
    totals = np.maximum(confusion.sum(axis=1), 1)
    out: dict[str, Any] = {
        "design": source,
        "dataset": dataset,
        "n_test": int(confusion.sum()),
        **settings,
        "accuracy": evaluation.accuracy,
        "classes": list(design.classes),
        "per_class_accuracy": (np.diag(confusion) / totals).tolist(),
        "confusion": confusion.tolist(),
    }
    if misalignment is not None:
        out["misalignment_accuracy"] = {
            "trials": misalignment.tolist(),
            "mean": float(np.mean(misalignment)),
            "std": float(np.std(misalignment)),
            "min": float(np.min(misalignment)),
            "max": float(np.max(misalignment)),
        }
    return out


def format_evaluation(report: dict[str, Any]) -> str:
    """The human-readable form of ``evaluation_dict``: headline, settings, confusion table."""
    lines = [
        f"design   {report['design']}",
        f"dataset  {report['dataset']} ({report['n_test']} test images)",
        "settings " + ", ".join(f"{k}={v}" for k, v in report.items() if k in _SETTINGS),
        f"accuracy {report['accuracy']:.2%} (aligned)",
    ]
    mis = report.get("misalignment_accuracy")
    if mis is not None:
        lines.append(
            f"misaligned: mean {mis['mean']:.2%} +- {mis['std']:.2%} (min {mis['min']:.2%}, "
            f"max {mis['max']:.2%}) over {len(mis['trials'])} trials"
        )
    classes = [c[:10] for c in report["classes"]]
    width = max(6, max(len(c) for c in classes) + 1)
    lines.append("")
    lines.append("confusion (rows: true class, columns: predicted)")
    lines.append(" " * width + "".join(f"{i:>6}" for i in range(len(classes))) + "  accuracy")
    for i, (name, row) in enumerate(zip(classes, report["confusion"])):
        cells = "".join(f"{v:>6}" for v in row)
        lines.append(f"{i} {name:<{width - 2}}" + cells + f"  {report['per_class_accuracy'][i]:8.1%}")
    return "\n".join(lines)


_SETTINGS = (
    "absorption",
    "quantize_step_m",
    "misalign_sigma_m",
    "misalign_sigma_z_m",
    "misalign_sigma_rotation_deg",
    "seed",
)


def design_row(name: str, design: Design) -> dict[str, Any]:
    """One line of ``labctl design list``."""
    prov = design.provenance
    return {
        "name": name,
        "dataset": design.dataset,
        "test_accuracy": prov.get("test_accuracy"),
        "n_test": prov.get("n_test"),
        "geometry": geometry_summary(design),
        "vaccination_sigma_m": prov.get("train_options", {}).get("vaccination_sigma_m", 0.0),
        "vaccination_sigma_z_m": prov.get("train_options", {}).get("vaccination_sigma_z_m", 0.0),
        "vaccination_sigma_rotation_deg": prov.get("train_options", {}).get("vaccination_sigma_rotation_deg", 0.0),
        "epochs": len(prov.get("history", [])),
        "train_seconds": prov.get("train_seconds"),
        "command": prov.get("command", ""),
    }


def format_design_rows(rows: list[dict[str, Any]]) -> str:
    """A text table of design_row dicts: the vaccination as lateral mm / axial mm / rotation degrees."""
    if not rows:
        return "no shipped designs"
    width = max(len("name"), *(len(r["name"]) for r in rows)) + 2
    header = f"{'name':<{width}}{'dataset':<15}{'accuracy':>9}{'test':>7}  {'vacc. xy mm/z mm/rot deg':<25} geometry"
    lines = [header]
    for r in rows:
        acc = "-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.2%}"
        vaccination = (
            f"{r['vaccination_sigma_m'] * 1e3:.2f} / {r['vaccination_sigma_z_m'] * 1e3:.2f} / "
            f"{r['vaccination_sigma_rotation_deg']:.2f}"
        )
        lines.append(
            f"{r['name']:<{width}}{r['dataset']:<15}{acc:>9}{r['n_test'] or '-':>7}  {vaccination:<25} {r['geometry']}"
        )
    return "\n".join(lines)
