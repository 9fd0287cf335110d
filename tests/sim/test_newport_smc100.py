"""SMC100 driver against VirtualSMC100 over a real pty, at simulated time scale 0."""

import time

import pytest
import serial

from labctl.drivers.newport_smc100 import SMC100
from labctl.errors import ConnectionLost, InstrumentError, InstrumentTimeout, LimitError, WrongInstrument
from labctl.sim.clock import Clock
from labctl.sim.faults import Fault, FaultPlan
from labctl.sim.instruments.newport_smc100 import VirtualSMC100
from labctl.sim.link import PtyLink
from labctl.sim.motion import SimAxis

TRAVEL_M = (0.0, 0.025)


@pytest.fixture
def chain(tmp_path):
    """Controllers 1 and 2 on one chain; ``serve(time_scale)`` puts them on a pty."""
    links = []

    def serve(time_scale=0.0):
        clock = Clock(time_scale)
        axes = {
            1: SimAxis("1", clock, TRAVEL_M, power_on_m=0.012),
            2: SimAxis("2", clock, TRAVEL_M, backlash_m=20e-6, power_on_m=0.020),
        }
        vi = VirtualSMC100("smc", clock, axes)
        link = PtyLink(vi, tmp_path / f"smc{len(links)}.tty")
        vi.attach(link)
        links.append(link)
        return vi, axes, link

    yield serve
    for link in links:
        link.close()


def connect(link, **kwargs):
    return SMC100(str(link.path), "smc", **kwargs)


def test_identify_and_stage_id(chain):
    _, _, link = chain()
    s = connect(link)
    assert s.identify() == "SMC_CC - Controller-driver version  3. 1. 2"
    assert s.stage_id(2) == "UTS25CC_PN:B0000000000001_UD:010125"
    s.close()


def test_identity_scans_a_chain_that_does_not_start_at_address_1(tmp_path):
    clock = Clock(0)
    vi = VirtualSMC100("smc", clock, {3: SimAxis("3", clock), 4: SimAxis("4", clock)})
    link = PtyLink(vi, tmp_path / "chain.tty")
    vi.attach(link)
    try:
        s = SMC100(str(link.path), "smc", scan_timeout_s=0.05)
        assert (s.identity_address, s.identify()) == (3, "SMC_CC - Controller-driver version  3. 1. 2")
        assert s.adapter.connection.timeout == 2.0  # the scan's short timeout is undone
        s.close()
        vi.faults = FaultPlan(rates={Fault.TIMEOUT: 1.0})
        with pytest.raises(WrongInstrument, match="nothing answered") as refused:  # after asking 1..31
            SMC100(str(link.path), "smc", scan_timeout_s=0.005)
        assert "no controller answered VE at addresses 1..31" in str(refused.value.__cause__)
    finally:
        link.close()


def test_home_then_absolute_and_relative_moves(chain):
    _, axes, link = chain()
    s = connect(link)
    x = s.axis(1, "x", limits_m=TRAVEL_M)
    with pytest.raises(InstrumentError, match="NOT REFERENCED .*home the axis first"):
        x.move_to(0.010)
    assert axes[1].true_position_m() == pytest.approx(0.012)  # nothing moved
    x.home()
    assert x.position_m() == pytest.approx(0.0)
    x.move_to(0.010)
    assert x.position_m() == pytest.approx(0.010, abs=1e-9)
    x.move_by(-0.0025)
    assert axes[1].position_m() == pytest.approx(0.0075, abs=1e-9)
    s.close()


def test_soft_limit_refusal_sends_nothing(chain):
    vi, _, link = chain()
    s = connect(link)
    seen = vi.faults.commands_seen
    with pytest.raises(LimitError):
        s.axis(1, "x", limits_m=(0.001, 0.02)).move_to(0.0005)
    assert vi.faults.commands_seen == seen
    s.close()


def test_backlash_compensation_lands_on_the_same_carriage_position_from_both_sides(chain):
    _, axes, link = chain()
    s = connect(link)

    def true_position_after(axis, start_m):
        axis.move_to(start_m)
        axis.move_to(0.010)
        return axes[2].true_position_m()

    plain = s.axis(2, "y", limits_m=TRAVEL_M)
    plain.home()
    assert true_position_after(plain, 0.015) - true_position_after(plain, 0.005) == pytest.approx(20e-6, abs=1e-9)
    compensated = s.axis(2, "y", limits_m=TRAVEL_M, backlash_m=50e-6)
    assert true_position_after(compensated, 0.015) - true_position_after(compensated, 0.005) == pytest.approx(
        0, abs=1e-9
    )
    s.close()


def test_two_controllers_share_the_chain(chain):
    _, axes, link = chain()
    s = connect(link)
    x, y = s.axis(1, "x", limits_m=TRAVEL_M), s.axis("2", "y", limits_m=TRAVEL_M)
    x.home()
    y.home()
    x.move_to(0.004)
    y.move_to(0.017)
    assert (axes[1].position_m(), axes[2].position_m()) == pytest.approx((0.004, 0.017))
    s.close()


def test_target_beyond_the_controller_limits_is_refused(chain):
    _, axes, link = chain()
    s = connect(link)
    wide = s.axis(1, "x", limits_m=(0.0, 0.05))
    wide.home()
    with pytest.raises(
        InstrumentError, match=r"controller 1 refused '1PA30': error C \(parameter missing or out of range"
    ):
        wide.move_to(0.030)
    assert axes[1].position_m() == pytest.approx(0.0)
    s.close()


def test_homing_again_resets_the_controller_and_waits_through_its_silence(chain):
    _, axes, link = chain(time_scale=0.02)  # the reset keeps it silent for 60 ms
    s = connect(link, timeout_s=0.1)
    x = s.axis(1, "x", limits_m=TRAVEL_M)
    x.home()
    x.move_to(0.002)
    x.home()
    assert x.position_m() == pytest.approx(0.0)
    assert axes[1].true_position_m() == pytest.approx(0.0)
    s.close()


def test_following_error_and_end_of_run_raise_after_the_move(chain):
    vi, axes, link = chain()
    s = connect(link)
    x, y = s.axis(1, "x", limits_m=(0.0, 0.05)), s.axis(2, "y", limits_m=TRAVEL_M)
    x.home()
    y.home()
    vi.controllers[1].high_mm = 40.0  # SR set beyond the mechanical travel
    with pytest.raises(InstrumentError, match="positive end of run after the move"):
        x.move_to(0.030)
    axes[2].stalled = True
    with pytest.raises(InstrumentError, match="DISABLE .*following error after the move"):
        y.move_to(0.005)
    with pytest.raises(InstrumentError, match="not READY; nothing was moved"):
        y.move_to(0.006)
    s.close()


def test_timeout_fault_with_a_short_driver_timeout(chain):
    vi, _, link = chain()
    s = connect(link, timeout_s=0.2)
    vi.faults = FaultPlan(rates={Fault.TIMEOUT: 1.0})
    start = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="smc: no complete answer in time .*'1TS'"):
        s.axis(1, "x").is_moving()
    assert time.monotonic() - start < 1.0
    s.close()


def test_error_fault_is_memorised_and_read_back(chain):
    vi, axes, link = chain()
    s = connect(link)
    s.axis(1, "x").home()
    failing = vi.faults = FaultPlan(rates={Fault.ERROR: 1.0})
    s.send(1, "PA5")
    deadline = time.monotonic() + 1.0
    while failing.commands_seen < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    vi.faults = FaultPlan()
    with pytest.raises(InstrumentError, match=r"error D \(execution not allowed\)"):
        s.check_error(1, "PA5")
    assert axes[1].position_m() == pytest.approx(0.0)
    s.close()


def test_disconnect_is_connection_lost(chain):
    vi, _, link = chain()
    s = connect(link, timeout_s=0.5)
    vi.faults = FaultPlan(disconnect_after=1)
    with pytest.raises(ConnectionLost, match="smc"):
        s.axis(1, "x").position_m()
    s.close()


# -- the virtual controllers, byte for byte, as a third-party client sees them ---------------------
def test_raw_answers_follow_the_manual(chain):
    _, _, link = chain()
    with serial.Serial(str(link.path), 57600, timeout=0.5, xonxoff=True) as port:

        def tell(command):  # a command that answers nothing: the next answer proves it stayed silent
            port.write(command + b"\r\n")

        def ask(command):
            tell(command)
            return port.readline()

        assert ask(b"1TS") == b"1TS00000A\r\n"
        tell(b"1PA5")  # not referenced: the error is memorised
        assert ask(b"1TE") == b"1TEH\r\n"
        assert ask(b"1TE") == b"1TE@\r\n"
        tell(b"2 o r")
        assert ask(b"2ts") == b"2TS000032\r\n"
        tell(b"2PR3")
        assert ask(b"2TS") == b"2TS000033\r\n"
        assert ask(b"2TP?") == b"2TP3.000000\r\n"
        for command, error in ((b"2PA30", b"C"), (b"2PR23", b"G"), (b"2OR", b"K"), (b"2XY", b"A")):
            tell(command)
            assert ask(b"2TE") == b"2TE" + error + b"\r\n"
        assert ask(b"2SR?") == b"2SR25.000000\r\n"
        assert ask(b"2VE") == b"2VE SMC_CC - Controller-driver version  3. 1. 2\r\n"
        assert ask(b"2VE?") == b"2VE SMC_CC - Controller-driver version  3. 1. 2\r\n"
        assert ask(b"2ID?") == b"2IDUTS25CC_PN:B0000000000001_UD:010125\r\n"
        port.timeout = 0.05
        assert ask(b"9TS") == b""  # no controller 9 on this chain
