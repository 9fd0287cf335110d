"""SMC100 and SMC100Axis against exact transcripts of the SMC100 protocol."""

import pytest
from pymeasure.test import expected_protocol

from labctl.drivers.newport_smc100 import SMC100, SMCState, format_mm
from labctl.errors import ConfigError, InstrumentError, LimitError, WrongInstrument

IDENTITY = [("1VE", "1VE SMC_CC - Controller-driver version  3. 1. 2")]


def smc(pairs, **kwargs):
    return expected_protocol(SMC100, IDENTITY + pairs, name="smc", **kwargs)


def test_identity_is_the_version_answer():
    with expected_protocol(
        SMC100, IDENTITY + [("4VE", "4VE SMC_PP - Controller-driver version  3. 0. 1")], name="smc"
    ) as s:
        s.identity_address = 4
        assert s.identify() == "SMC_PP - Controller-driver version  3. 0. 1"


def test_a_controller_that_is_not_an_smc100_is_refused():
    with pytest.raises(WrongInstrument, match="smc: the device on this port says 'ESP300'"):
        with expected_protocol(SMC100, [("1VE", "1VE ESP300")], name="smc"):
            pass
    with pytest.raises(WrongInstrument, match="does not speak the SMC100 protocol"):
        with expected_protocol(SMC100, [("1VE", "@01 0 OK IDLE -- 0")], name="smc"):
            pass


def test_position_is_millimetres_on_the_wire():
    with smc([("3TP", "3TP12.345678")]) as s:
        assert s.axis("3", "x").position_m() == pytest.approx(12.345678e-3)


def test_move_checks_state_sends_pa_reads_error_waits_and_checks():
    pairs = [
        ("2TS", "2TS000032"),
        ("2PA10.5", None),
        ("2TE", "2TE@"),
        ("2TS", "2TS000028"),
        ("2TS", "2TS000033"),
        ("2TS", "2TS000033"),
    ]
    with smc(pairs) as s:
        s.axis(2, "x", limits_m=(0, 0.025)).move_to(10.5e-3)


def test_move_when_not_referenced_says_home_first_and_sends_no_move():
    with smc([("1TS", "1TS00000A")]) as s:
        with pytest.raises(InstrumentError, match=r"x: smc controller 1 is NOT REFERENCED .*home the axis first"):
            s.axis(1, "x").move_to(1e-3)


def test_move_when_disabled_is_refused():
    with smc([("1TS", "1TS00003C")]) as s:
        with pytest.raises(InstrumentError, match="DISABLE .*not READY; nothing was moved"):
            s.axis(1, "x").move_to(1e-3)


@pytest.mark.parametrize(
    ("letter", "meaning"),
    [
        ("G", "target position out of limits"),
        ("C", "parameter missing or out of range"),
        ("M", "not allowed in MOVING"),
    ],
)
def test_memorised_error_after_pa_is_raised_with_its_meaning(letter, meaning):
    pairs = [("1TS", "1TS000033"), ("1PA24", None), ("1TE", f"1TE{letter}")]
    with smc(pairs) as s:
        with pytest.raises(InstrumentError, match=rf"smc: controller 1 refused '1PA24': error {letter} \({meaning}"):
            s.axis(1, "x").move_to(24e-3)


def test_home_from_not_referenced():
    pairs = [
        ("1TS", "1TS00000A"),
        ("1OR", None),
        ("1TE", "1TE@"),
        ("1TS", "1TS00001E"),
        ("1TS", "1TS000032"),
        ("1TS", "1TS000032"),
    ]
    with smc(pairs) as s:
        s.axis(1, "x").home()


def test_home_when_referenced_resets_first():
    pairs = [
        ("1TS", "1TS000033"),
        ("1RS", None),
        ("1TS", "1TS00000A"),
        ("1OR", None),
        ("1TE", "1TE@"),
    ]
    with smc(pairs) as s:
        s.axis(1, "x").home(wait=False)


def test_following_error_after_a_move_raises_with_the_bits_decoded():
    pairs = [
        ("1TS", "1TS000032"),
        ("1PA5", None),
        ("1TE", "1TE@"),
        ("1TS", "1TS00203D"),
        ("1TS", "1TS00203D"),
    ]
    with smc(pairs) as s:
        with pytest.raises(InstrumentError, match="DISABLE .*following error after the move"):
            s.axis(1, "x").move_to(5e-3)


def test_end_of_run_after_a_move_raises():
    pairs = [("1TS", "1TS000032"), ("1PA5", None), ("1TE", "1TE@"), ("1TS", "1TS000233"), ("1TS", "1TS000233")]
    with smc(pairs) as s:
        with pytest.raises(InstrumentError, match="positive end of run"):
            s.axis(1, "x").move_to(5e-3)


def test_backlash_overshoots_below_then_approaches_from_below():
    pairs = [
        ("1TP", "1TP8.000000"),
        ("1TS", "1TS000033"),
        ("1PA4.95", None),
        ("1TE", "1TE@"),
        ("1TS", "1TS000033"),
        ("1TS", "1TS000033"),
        ("1TS", "1TS000033"),
        ("1PA5", None),
        ("1TE", "1TE@"),
        ("1TS", "1TS000033"),
        ("1TS", "1TS000033"),
    ]
    with smc(pairs) as s:
        s.axis(1, "x", limits_m=(0, 0.025), backlash_m=50e-6).move_to(5e-3)


def test_soft_limit_refusal_sends_nothing():
    with smc([]) as s:
        with pytest.raises(LimitError):
            s.axis(1, "x", limits_m=(0, 0.025)).move_to(-1e-3)


def test_stop_stage_id_and_a_late_answer_of_another_controller():
    pairs = [
        ("2ST", None),
        ("2ID?", "2IDLTA-HS_PN:B0601246985103_UD:062509"),
        ("2TP", "3TP1.000000"),
        (None, "2TP2.000000"),
    ]
    with smc(pairs) as s:
        axis = s.axis("2", "y")
        axis.stop()
        assert s.stage_id(2) == "LTA-HS_PN:B0601246985103_UD:062509"
        assert axis.position_m() == pytest.approx(2e-3)


def test_unreadable_status_is_an_error():
    with smc([("1TS", "1TS00ZZ32")]) as s:
        with pytest.raises(InstrumentError, match="not 4\\+2 hex digits"):
            s.axis(1, "x").is_moving()


@pytest.mark.parametrize(
    ("code", "name", "referenced", "moving"),
    [
        ("0A", "NOT REFERENCED", False, False),
        ("11", "NOT REFERENCED", False, False),
        ("14", "CONFIGURATION", False, False),
        ("1E", "HOMING", True, True),
        ("28", "MOVING", True, True),
        ("32", "READY", True, False),
        ("35", "READY", True, False),
        ("3E", "DISABLE", True, False),
    ],
)
def test_state_decoding(code, name, referenced, moving):
    state = SMCState(0, code)
    assert (state.name, state.referenced, state.moving) == (name, referenced, moving)


def test_positioner_error_text_and_mm_format():
    assert SMCState(0x0021, "3D").error_text() == "following error, negative end of run"
    assert [format_mm(v) for v in (10.5e-3, 0.0, -1e-9, -2.5e-3, 1e-10)] == ["10.5", "0", "-0.000001", "-2.5", "0"]


def test_configuration_errors():
    with pytest.raises(ConfigError, match="unknown option"):
        SMC100.from_station("smc", "/dev/null", {"microstep_m": 1})
    with smc([]) as s:
        for bad in ("0", "32", "x"):
            with pytest.raises(ConfigError, match="1..31"):
                s.axis(bad, "x")
