"""ZaberAscii and ZaberAxis against exact transcripts of the Zaber ASCII protocol."""

import pytest
from pymeasure.test import expected_protocol

from labctl.drivers.zaber import DEFAULT_MICROSTEP_M, ZaberAscii, parse_address, parse_reply
from labctl.errors import ConfigError, InstrumentError, LimitError, WrongInstrument

IDENTITY = [
    ("/0 0 get version", "@01 0 OK IDLE WR 7.38"),
    ("/1 0 get device.id", "@01 0 OK IDLE WR 50081"),
]
UM = 1e-6  # microstep used in these transcripts: 1 um, so that microsteps read as micrometres


def zaber(pairs, **kwargs):
    kwargs.setdefault("microstep_m", UM)
    return expected_protocol(ZaberAscii, IDENTITY + pairs, name="zaber", **kwargs)


def test_identify_returns_device_id_and_firmware():
    with expected_protocol(ZaberAscii, IDENTITY + IDENTITY, name="zaber") as z:
        assert z.identify() == "Zaber device 1: device.id 50081, firmware 7.38"


def test_identity_asks_the_first_device_that_answers_all():
    pairs = [("/0 0 get version", "@04 0 OK IDLE -- 7.20"), ("/4 0 get device.id", "@04 0 OK IDLE -- 50419")]
    with expected_protocol(ZaberAscii, pairs, name="zaber") as z:
        assert z.identity_device is None


def test_identity_firmware_6_asks_deviceid_of_the_configured_device():
    pairs = [("/3 0 get version", "@03 0 OK IDLE -- 6.32"), ("/3 0 get deviceid", "@03 0 OK IDLE -- 30222")]
    with expected_protocol(ZaberAscii, pairs, name="zaber", identity_device=3):
        pass


def test_info_messages_and_alerts_are_skipped():
    pairs = [
        ("/0 0 get version", "#01 0 a note from the device"),
        (None, "!01 1 IDLE --"),
        (None, "@01 0 OK IDLE -- 7.38"),
        ("/1 0 get device.id", "@01 0 OK IDLE -- 50081"),
    ]
    with expected_protocol(ZaberAscii, pairs, name="zaber"):
        pass


def test_a_device_that_is_not_zaber_is_refused_by_name():
    with pytest.raises(WrongInstrument, match="zaber.*does not speak the Zaber ASCII protocol"):
        with expected_protocol(
            ZaberAscii, [("/0 0 get version", "THORLABS FW102C")] * 3, name="zaber"
        ):  # asked 3 times
            pass


def test_position_is_microsteps_times_microstep():
    with zaber([("/2 1 get pos", "@02 1 OK IDLE -- 12500")]) as z:
        assert z.axis("2.1", "x").position_m() == pytest.approx(12.5e-3)


def test_default_microstep_and_per_axis_microsteps():
    with zaber([], microstep_m={"2": 0.1e-6, "1.2": 2e-6}) as z:
        assert z.axis("2.1", "a").microstep_m == 0.1e-6
        assert z.axis("1.2", "b").microstep_m == 2e-6
        assert z.axis("1", "c").microstep_m == DEFAULT_MICROSTEP_M
        assert z.axis("1", "d", microstep_m=3e-6).microstep_m == 3e-6


def test_move_checks_warnings_moves_waits_and_checks_again():
    pairs = [
        ("/1 1 warnings", "@01 1 OK IDLE -- 00"),
        ("/1 1 move abs 5000", "@01 1 OK BUSY -- 0"),
        ("/1 1", "@01 1 OK BUSY -- 0"),
        ("/1 1", "@01 1 OK IDLE -- 0"),
        ("/1 1 warnings", "@01 1 OK IDLE -- 00"),
    ]
    with zaber(pairs) as z:
        z.axis("1", "x", limits_m=(0, 0.01)).move_to(5e-3)


def test_move_without_reference_says_home_first_and_sends_no_move():
    pairs = [("/2 1 warnings", "@02 1 OK IDLE WR 01 WR")]
    with zaber(pairs) as z:
        with pytest.raises(InstrumentError, match=r"x: zaber device 2 axis 1 has WR .*home the axis first"):
            z.axis("2.1", "x").move_to(1e-3)


def test_not_homed_flag_also_says_home_first():
    pairs = [("/1 1 warnings", "@01 1 OK IDLE WH 02 WH NI")]
    with zaber(pairs) as z:
        with pytest.raises(InstrumentError, match="WH .*home the axis first"):
            z.axis("1", "x").move_to(1e-3)


def test_stale_warnings_are_cleared_before_a_move():
    pairs = [
        ("/1 1 warnings", "@01 1 OK IDLE NI 01 NI"),
        ("/1 1 warnings clear", "@01 1 OK IDLE -- 01 NI"),
        ("/1 1 move abs 100", "@01 1 OK BUSY -- 0"),
    ]
    with zaber(pairs) as z:
        z.axis("1", "x").move_to(100e-6, wait=False)


def test_stall_after_a_move_raises_and_acknowledges_the_warning():
    pairs = [
        ("/1 1 warnings", "@01 1 OK IDLE -- 00"),
        ("/1 1 move abs 2000", "@01 1 OK BUSY -- 0"),
        ("/1 1", "@01 1 OK IDLE FS 0"),
        ("/1 1 warnings", "@01 1 OK IDLE FS 01 FS"),
        ("/1 1 warnings clear", "@01 1 OK IDLE -- 01 FS"),
    ]
    with zaber(pairs) as z:
        with pytest.raises(InstrumentError, match=r"FS \(stalled and stopped\) after the move"):
            z.axis("1", "x").move_to(2e-3)


def test_unexpected_limit_after_a_move_raises():
    pairs = [
        ("/1 2 warnings", "@01 2 OK IDLE -- 00"),
        ("/1 2 move abs 9000", "@01 2 OK BUSY -- 0"),
        ("/1 2", "@01 2 OK IDLE WL 0"),
        ("/1 2 warnings", "@01 2 OK IDLE WL 01 WL"),
        ("/1 2 warnings clear", "@01 2 OK IDLE -- 01 WL"),
    ]
    with zaber(pairs) as z:
        with pytest.raises(InstrumentError, match="WL .*limit sensor"):
            z.axis("1.2", "y").move_to(9e-3)


@pytest.mark.parametrize(
    ("reason", "advice"),
    [("BADDATA", "limit.min..limit.max"), ("STATUSBUSY", "busy"), ("PARKED", "parked"), ("AGAIN", "send it again")],
)
def test_rejected_move_names_device_axis_command_and_reason(reason, advice):
    pairs = [
        ("/1 1 warnings", "@01 1 OK IDLE -- 00"),
        ("/1 1 move abs 123", f"@01 1 RJ IDLE -- {reason}"),
    ]
    with zaber(pairs) as z:
        with pytest.raises(
            InstrumentError, match=rf"zaber: device 1 axis 1 rejected '/1 1 move abs 123': {reason} .*{advice}"
        ):
            z.axis("1", "x").move_to(123e-6)


def test_bad_axis_and_bad_command_rejections():
    pairs = [("/1 3 get pos", "@01 3 RJ IDLE -- BADAXIS"), ("/1 1 frobnicate", "@01 1 RJ IDLE -- BADCOMMAND")]
    with zaber(pairs) as z:
        with pytest.raises(InstrumentError, match="BADAXIS .*check the axis number"):
            z.axis("1.3", "z").position_m()
        with pytest.raises(InstrumentError, match="BADCOMMAND"):
            z.query(1, 1, "frobnicate")


def test_soft_limit_refusal_sends_nothing():
    with zaber([]) as z:
        with pytest.raises(LimitError):
            z.axis("1", "x", limits_m=(0, 0.01)).move_to(0.02)


def test_backlash_overshoots_below_then_approaches_from_below():
    pairs = [
        ("/1 1 get pos", "@01 1 OK IDLE -- 8000"),
        ("/1 1 warnings", "@01 1 OK IDLE -- 00"),
        ("/1 1 move abs 4950", "@01 1 OK BUSY -- 0"),
        ("/1 1", "@01 1 OK IDLE -- 0"),
        ("/1 1 warnings", "@01 1 OK IDLE -- 00"),
        ("/1 1 warnings", "@01 1 OK IDLE -- 00"),
        ("/1 1 move abs 5000", "@01 1 OK BUSY -- 0"),
        ("/1 1", "@01 1 OK IDLE -- 0"),
        ("/1 1 warnings", "@01 1 OK IDLE -- 00"),
    ]
    with zaber(pairs) as z:
        z.axis("1", "x", limits_m=(0, 0.01), backlash_m=50e-6).move_to(5e-3)


def test_home_stop_and_busy():
    pairs = [
        ("/2 1 home", "@02 1 OK BUSY WR 0"),
        ("/2 1", "@02 1 OK BUSY WR 0"),
        ("/2 1 stop", "@02 1 OK BUSY NI 0"),
    ]
    with zaber(pairs) as z:
        axis = z.axis("2.1", "x")
        axis.home(wait=False)
        assert axis.is_moving()
        axis.stop()


def test_late_reply_of_another_axis_is_skipped_and_garbage_refused():
    pairs = [
        ("/1 2 get pos", "@01 1 OK IDLE -- 5"),
        (None, "@01 2 OK IDLE -- 7"),
        *[("/1 2 get pos", "@01 2 OK IDLE -- 7x")] * 3,
        *[("/1 2 get pos", "@0\x01 2 OK IDLE -- 7")] * 3,  # unreadable: asked three times
    ]
    with zaber(pairs) as z:
        axis = z.axis("1.2", "y")
        assert axis.position_m() == pytest.approx(7e-6)
        with pytest.raises(InstrumentError, match="not a position"):
            axis.position_m()
        with pytest.raises(InstrumentError, match="unreadable reply"):
            axis.position_m()


def test_parse_reply_and_address():
    reply = parse_reply("@02 1 RJ BUSY FS BADDATA")
    assert (reply.device, reply.axis, reply.rejected, reply.busy, reply.warning, reply.data) == (
        2,
        1,
        True,
        True,
        "FS",
        "BADDATA",
    )
    assert parse_reply("@01 0 OK IDLE --").data == ""
    assert parse_reply("1TS000032") is None
    assert parse_address("3") == (3, 1)
    assert parse_address("12.2") == (12, 2)
    for bad in ("0", "1.0", "x", "100", "1.2.3"):
        with pytest.raises(ConfigError):
            parse_address(bad)


def test_from_station_refuses_unknown_options_and_bad_microsteps():
    with pytest.raises(ConfigError, match="unknown option"):
        ZaberAscii.from_station("zaber", "/dev/null", {"speed": 3})
    with pytest.raises(ConfigError, match="microstep_m"):
        ZaberAscii("/dev/null", "zaber", microstep_m=-1)
    with pytest.raises(ConfigError, match="Zaber axis address"):
        ZaberAscii("/dev/null", "zaber", microstep_m={"one": 1e-6})
