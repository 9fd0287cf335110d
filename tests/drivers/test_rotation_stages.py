"""Rotation stages by byte transcript: PRM1-Z8 on a KDC101, the K10CR1 (APT), a Zaber rotary device.

The counts are written out from the scaling the APT protocol document gives (1919.6418578623391
counts per degree for the PRM1-Z8; 409600/3 microsteps per degree for the K10CR1), not computed
with the driver's constants, so a wrong constant fails here.
"""

from __future__ import annotations

import math
import struct

import pytest
from pymeasure.adapters import SerialAdapter
from pymeasure.test import expected_protocol

from labctl.drivers.thorlabs_apt import K10CR1, KDC101, KDC101Rotation
from labctl.drivers.zaber import ZaberAscii, ZaberRotation
from labctl.errors import ConfigError, LimitError, WrongInstrument
from tests.drivers.test_thorlabs_apt import (
    NO_FLASH,
    OPEN,
    REQ_INFO,
    REQ_POS,
    START_UPDATES,
    STOP_UPDATES,
    ScriptedPort,
    completed,
    counts_message,
    get_info,
    h,
    no_dwell,  # noqa: F401  (autouse fixture: no purge dwell)
)


def move_absolute(counts: int) -> bytes:
    return h("53 04 06 00 d0 01 01 00") + counts.to_bytes(4, "little", signed=True)


def prm1z8(script: list[tuple[bytes | None, bytes]]) -> tuple[KDC101, ScriptedPort]:
    port = ScriptedPort(OPEN + script + [(STOP_UPDATES, b"")])
    return KDC101(SerialAdapter(port), "kdc", timeout_s=0.2, stage="PRM1Z8"), port


def test_prm1z8_moves_in_radians_and_sends_its_counts_per_degree() -> None:
    # 10 degrees x 1919.6418578623391 counts/degree = 19196.4 -> 19196 counts (0x4afc)
    controller, port = prm1z8(
        [
            (h("53 04 06 00 d0 01 01 00 fc 4a 00 00"), b""),
            (None, completed(19196)),
            (REQ_POS, counts_message(0x0412, 19196, dest=0x81, source=0x50)),
        ]
    )
    rotation = controller.rotation("1", "L1.r", (-math.pi, math.pi))
    assert isinstance(rotation, KDC101Rotation)
    rotation.move_to(math.radians(10.0), timeout_s=1)
    assert rotation.angle_rad() == pytest.approx(math.radians(19196 / 1919.6418578623391), rel=1e-12)
    controller.close()
    port.check_done()


def test_rotation_soft_limit_refuses_before_a_byte_is_sent_and_says_degrees() -> None:
    controller, port = prm1z8([])
    rotation = controller.rotation("1", "L1.r", (math.radians(-5), math.radians(5)))
    with pytest.raises(LimitError, match=r"L1\.r.*6\.0000 deg.*\[-5\.0000, 5\.0000\] deg; nothing was moved"):
        rotation.move_to(math.radians(6))
    controller.close()
    port.check_done()  # nothing but opening and closing went out


def test_a_translation_stage_is_not_a_rotation_axis_and_the_other_way_round() -> None:
    controller, port = connect_z8()
    with pytest.raises(
        ConfigError, match=r"kdc: .*translation stage.*rotation axis.*option stage to one of \['PRM1Z8'\]"
    ):
        controller.rotation("1", "L1.r", (-1.0, 1.0))
    controller.close()
    port.check_done()
    controller, port = prm1z8([])
    with pytest.raises(ConfigError, match="rotation stage, but a translation axis"):
        controller.axis("1", "L1.x", (0.0, 0.025))
    with pytest.raises(ConfigError, match="translation stage"):
        controller.position_m()
    controller.close()
    port.check_done()


def connect_z8() -> tuple[KDC101, ScriptedPort]:
    port = ScriptedPort(OPEN + [(STOP_UPDATES, b"")])
    return KDC101(SerialAdapter(port), "kdc", timeout_s=0.2), port


def test_stage_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"kdc: option stage: expected one of 'Z8', 'PRM1Z8', got 'K10CR1'"):
        KDC101(SerialAdapter(ScriptedPort([])), "kdc", stage="K10CR1")
    with pytest.raises(ConfigError, match="counts_per_deg is for a rotation stage, but the stage is Z8"):
        KDC101(SerialAdapter(ScriptedPort([])), "kdc", counts_per_deg=2000.0)
    with pytest.raises(ConfigError, match="option counts_per_deg: expected number > 0, got 0"):
        KDC101(SerialAdapter(ScriptedPort([])), "kdc", stage="PRM1Z8", counts_per_deg=0)


def test_counts_per_deg_overrides_the_scaling() -> None:
    # 1000 counts per degree: 2 degrees is 2000 counts (0x07d0)
    port = ScriptedPort(
        OPEN + [(h("53 04 06 00 d0 01 01 00 d0 07 00 00"), b""), (None, completed(2000)), (STOP_UPDATES, b"")]
    )
    controller = KDC101(SerialAdapter(port), "kdc", timeout_s=0.2, stage="PRM1Z8", counts_per_deg=1000.0)
    controller.rotation("1", "r", (-1.0, 1.0)).move_to(math.radians(2.0), timeout_s=1)
    controller.close()
    port.check_done()


# -- K10CR1 ----------------------------------------------------------------------------------------
K10_OPEN = [(NO_FLASH, b""), (REQ_INFO, get_info(b"K10CR1")), (START_UPDATES, b"")]


def stepper_status(msgid: int, counts: int, bits: int = 0x80000500) -> bytes:
    """A stepper's 14-byte status: channel, position, encoder count, status bits."""
    return struct.pack("<HBBBB", msgid, 14, 0, 0x81, 0x50) + struct.pack("<HiiI", 1, counts, counts, bits)


def test_k10cr1_moves_by_its_microsteps_per_degree_and_reads_stepper_status() -> None:
    # -20 degrees x 409600/3 microsteps/degree = -2730666.7 -> -2730667 (0xffd65555)
    target = h("55 55 d6 ff")
    port = ScriptedPort(
        K10_OPEN
        + [
            (h("53 04 06 00 d0 01 01 00") + target, b""),
            (None, stepper_status(0x0464, -2730667)),
            (h("80 04 01 00 50 01"), stepper_status(0x0481, -2730667)),
            (STOP_UPDATES, b""),
        ]
    )
    stage = K10CR1(SerialAdapter(port), "k10", timeout_s=0.2)
    rotation = stage.rotation("1", "L2.r", (-math.pi, math.pi))
    rotation.move_to(math.radians(-20.0), timeout_s=1)
    status = stage.channel_status()
    assert status.position_counts == -2730667 and status.encoder_counts == -2730667 and not status.moving()
    last, age = stage.last_status()
    assert last is not None and last.position_counts == -2730667 and age < 1
    stage.close()
    port.check_done()


def test_k10cr1_and_kdc101_refuse_each_other() -> None:
    with pytest.raises(WrongInstrument, match="K10CR1"):
        KDC101(SerialAdapter(ScriptedPort([(NO_FLASH, b""), (REQ_INFO, get_info(b"K10CR1"))])), "kdc", timeout_s=0.2)
    with pytest.raises(WrongInstrument, match="KDC101"):
        K10CR1(SerialAdapter(ScriptedPort([(NO_FLASH, b""), (REQ_INFO, get_info(b"KDC101"))])), "k10", timeout_s=0.2)


def test_k10cr1_has_no_translation_axis() -> None:
    port = ScriptedPort(K10_OPEN + [(STOP_UPDATES, b"")])
    stage = K10CR1(SerialAdapter(port), "k10", timeout_s=0.2)
    with pytest.raises(ConfigError, match="move this axis to a controller that drives one"):
        stage.axis("1", "x", (0.0, 0.01))
    stage.close()
    port.check_done()


# -- Zaber rotary ------------------------------------------------------------------------------------
IDENTITY = [("/0 0 get version", "@01 0 OK IDLE -- 7.38"), ("/1 0 get device.id", "@01 0 OK IDLE -- 50081")]


def test_zaber_rotary_microstep_comes_from_the_device_cycle_distance() -> None:
    # 1 536 000 microsteps per turn: 0.000234375 degree each; 384 000 is a quarter turn
    pairs = IDENTITY + [
        ("/3 1 get limit.cycle.dist", "@03 1 OK IDLE -- 1536000"),
        ("/3 1 get pos", "@03 1 OK IDLE -- 384000"),
        ("/3 1 warnings", "@03 1 OK IDLE -- 00"),
        ("/3 1 move abs -42667", "@03 1 OK BUSY -- 0"),  # -10 degrees
        ("/3 1", "@03 1 OK IDLE -- 0"),
        ("/3 1 warnings", "@03 1 OK IDLE -- 00"),
    ]
    with expected_protocol(ZaberAscii, pairs, name="zaber") as z:
        rotation = z.rotation("3", "L3.r", (-math.pi, math.pi))
        assert isinstance(rotation, ZaberRotation)
        assert rotation.microstep_rad == pytest.approx(math.radians(0.000234375))
        assert rotation.angle_rad() == pytest.approx(math.pi / 2)
        rotation.move_to(math.radians(-10.0), timeout_s=1)


def test_zaber_linear_device_is_refused_as_a_rotation_axis() -> None:
    pairs = IDENTITY + [("/1 1 get limit.cycle.dist", "@01 1 RJ IDLE -- BADCOMMAND")]
    with expected_protocol(ZaberAscii, pairs, name="zaber") as z:
        with pytest.raises(ConfigError, match="device 1 axis 1 does not report limit.cycle.dist.*remove the r entry"):
            z.rotation("1", "L1.r")
    pairs = IDENTITY + [("/2 1 get limit.cycle.dist", "@02 1 OK IDLE -- 0")]
    with expected_protocol(ZaberAscii, pairs, name="zaber") as z:
        with pytest.raises(ConfigError, match="not a rotary stage"):
            z.rotation("2", "L2.r")
