"""What bench a campaign was measured on, and what differs when it is resumed.

A campaign resumed on another bench (other detector channels, other stages, another design, a
recalibrated detector array) would mix two benches' samples in one file without a word. So a new
campaign records the bench it starts on (``bench_record``, in ``metadata["bench"]``; the design's
SHA-256 and the calibration versions are recorded beside it), and a resumed one compares that
record with the bench it meets (``differences``): any difference refuses the resume with one line
that names it, unless the operator says the difference is intended (``labctl run --resume ...
--accept-changes``), in which case the differences are stored in the file's ``resumes`` stream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labctl.errors import DataError


def bench_record(bench: Any) -> dict[str, Any]:
    """The station, each instrument's driver and identity, the channel map and which axis moves what."""
    config = bench.config
    states = bench.connection_state()
    return {
        "station": config.name,
        "instruments": {
            name: {"driver": entry.driver, "identity": states[name].identity if name in states else None}
            for name, entry in config.instruments.items()
        },
        "channels": [int(channel) for channel in config.detectors.channels],
        "axes": {
            f"{plate.name}.{axis_name}": f"{axis.instrument} {axis.address}"
            for plate in config.plates
            for axis_name, axis in plate.axes().items()
        },
        "station_design_sha256": _sha256(config.design_path),
    }


def _sha256(path: Path | None) -> str | None:
    from labctl.campaign.run import file_sha256

    return None if path is None or not Path(path).is_file() else file_sha256(path)


def calibration_versions(calibration: dict[str, Any]) -> dict[str, int]:
    """kind -> version, from a campaign's recorded calibration (or ``CalibrationSet.to_dict()``)."""
    return {
        kind: int(record["version"])
        for kind, record in calibration.items()
        if isinstance(record, dict) and record.get("version") is not None
    }


def differences(metadata: dict[str, Any], now: dict[str, Any], versions_now: dict[str, int]) -> list[str]:
    """What differs between the bench a campaign recorded and the bench (``now``) it is resumed on.

    ``versions_now``: the calibration versions in force in the station's calibration folder. A
    campaign from before this record existed is compared by station name only.
    """
    then = metadata.get("bench")
    if not isinstance(then, dict):
        name = metadata.get("station_name")
        return [] if name in (None, now["station"]) else [f"station {name!r} -> {now['station']!r}"]
    found: list[str] = []
    if then.get("station") != now["station"]:
        found.append(f"station {then.get('station')!r} -> {now['station']!r}")
    if then.get("channels") != now["channels"]:
        found.append(f"detector channels {_short(then.get('channels'))} -> {_short(now['channels'])}")
    for axis in sorted(set(then.get("axes", {})) | set(now["axes"])):
        was, is_ = then.get("axes", {}).get(axis), now["axes"].get(axis)
        if was != is_:
            found.append(f"axis {axis} {was or 'absent'} -> {is_ or 'absent'}")
    for name in sorted(set(then.get("instruments", {})) | set(now["instruments"])):
        was, is_ = then.get("instruments", {}).get(name), now["instruments"].get(name)
        if was != is_:
            found.append(f"instrument {name} {_instrument(was)} -> {_instrument(is_)}")
    recorded_design = (metadata.get("design") or {}).get("sha256")
    if now["station_design_sha256"] not in (None, then.get("station_design_sha256"), recorded_design):
        found.append("the station names another design than the one the campaign started with")
    for kind, version in sorted(calibration_versions(metadata.get("calibration") or {}).items()):
        latest = versions_now.get(kind)
        if latest is not None and latest != version:
            found.append(f"{kind} calibration v{version} -> v{latest} in the station's folder")
    return found


def refuse_changes(campaign: Path, found: list[str]) -> None:
    """The one-line refusal of a resume on a bench that differs (see the module docstring)."""
    if found:
        raise DataError(
            f"{campaign}: this bench differs from the one the campaign started on: {'; '.join(found)}. "
            "Resume it on that bench, or add --accept-changes if the difference is intended "
            "(the campaign keeps its recorded calibration and design; the differences are stored in the file)"
        )


def resume_entry(found: list[str], now: dict[str, Any]) -> dict[str, Any]:
    """The record of an accepted resume for the file's ``resumes`` stream."""
    return {"differences": json.dumps(found), "bench": json.dumps(now)}


def _short(channels: Any) -> str:
    if isinstance(channels, list) and len(channels) > 4:
        return f"[{channels[0]}, {channels[1]}, ..., {channels[-1]}] ({len(channels)})"
    return str(channels)


def _instrument(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "absent"
    return f"{entry.get('driver')} {entry.get('identity')!r}"
