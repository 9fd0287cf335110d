"""Which virtual instruments the simulated bench has, and how plates map onto their axes.

The default bench exercises every stage family at once, the way a lab that grew over years
does: plates 1-2 on a Zaber daisy chain, plates 3-4 on KDC101 controllers (one per axis), plate 5 on
an SMC100 RS-485 chain; more plates continue round-robin, two per family. One E8257D with a x12
multiplier is the THz source, a Keithley 2700 scans the 10 detectors, an FW102C holds the masks.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Stage families in the order plates are assigned to them, two plates per family.
STAGE_FAMILIES = ("ZaberAscii", "KDC101", "SMC100")
#: Rotation-stage families (with ``rotation_stages``), in turn per plate: a K10CR1, a PRM1-Z8 on
#: a KDC101, a rotary device on a second Zaber chain.
ROTATION_FAMILIES = ("K10CR1", "KDC101", "ZaberAscii")


@dataclass(frozen=True)
class AxisSlot:
    """Where one plate axis lives: the instrument name, its driver, and the address on it."""

    instrument: str
    driver: str
    address: str


def plate_axes(plate_index: int, with_z: bool = False) -> dict[str, AxisSlot]:
    """The axes of plate ``plate_index`` (0-based): ``{"x": slot, "y": slot[, "z": slot]}``."""
    family = STAGE_FAMILIES[(plate_index // 2) % len(STAGE_FAMILIES)]
    names = ("x", "y", "z") if with_z else ("x", "y")
    slots = {}
    for k, axis in enumerate(names):
        if family == "ZaberAscii":
            # one device per plate on the chain, one axis of it per direction
            slots[axis] = AxisSlot("zaber", family, f"{plate_index + 1}.{k + 1}")
        elif family == "KDC101":
            # one single-channel controller per axis, each on its own port
            slots[axis] = AxisSlot(f"kdc_p{plate_index + 1}{axis}", family, "1")
        else:
            # one controller per axis on a shared RS-485 chain, addressed from 1
            chain_position = (plate_index // (2 * len(STAGE_FAMILIES))) * 2 + plate_index % 2
            slots[axis] = AxisSlot("smc", family, str(chain_position * len(names) + k + 1))
    return slots


def plate_rotation(plate_index: int) -> AxisSlot:
    """Where plate ``plate_index``'s (0-based) rotation stage lives."""
    family = ROTATION_FAMILIES[plate_index % len(ROTATION_FAMILIES)]
    if family == "K10CR1":
        return AxisSlot(f"k10_p{plate_index + 1}", family, "1")  # a mount with its own controller and port
    if family == "KDC101":
        return AxisSlot(f"kdc_p{plate_index + 1}r", family, "1")  # PRM1-Z8 on its own KDC101
    return AxisSlot("zaber_r", family, str(plate_index + 1))  # one rotary device per plate on the chain
