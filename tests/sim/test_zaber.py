"""ZaberAscii driver against VirtualZaber over a real pty, at simulated time scale 0."""

import time

import pytest
import serial

from labctl.drivers.zaber import ZaberAscii
from labctl.errors import ConnectionLost, InstrumentError, InstrumentTimeout, LimitError
from labctl.sim.clock import Clock
from labctl.sim.faults import Fault, FaultPlan
from labctl.sim.instruments.zaber import MICROSTEP_M, VirtualZaber
from labctl.sim.link import PtyLink
from labctl.sim.motion import SimAxis

TRAVEL_M = (0.0, 0.025)


@pytest.fixture
def bench(tmp_path):
    """Two devices on one chain: device 1 with two axes, device 2 with one."""
    clock = Clock(0)
    axes = {
        1: [SimAxis("1.1", clock, TRAVEL_M, power_on_m=0.012), SimAxis("1.2", clock, TRAVEL_M, power_on_m=0.004)],
        2: [SimAxis("2.1", clock, TRAVEL_M, backlash_m=20e-6, power_on_m=0.020)],
    }
    made = []

    def serve(firmware="7.38"):
        vi = VirtualZaber("zaber", clock, axes, firmware=firmware)
        link = PtyLink(vi, tmp_path / f"zaber{len(made)}.tty")
        vi.attach(link)
        made.append(link)
        return vi, link, str(link.path)

    yield axes, serve
    for link in made:
        link.close()


def connect(path, **kwargs):
    return ZaberAscii(path, "zaber", microstep_m=MICROSTEP_M, **kwargs)


def test_identify_reads_device_id_on_firmware_7_and_deviceid_on_firmware_6(bench):
    _, serve = bench
    z = connect(serve()[2])
    assert z.identify() == "Zaber device 1: device.id 50081, firmware 7.38"
    z.close()
    z6 = connect(serve("6.32")[2], identity_device=2)
    assert z6.identify() == "Zaber device 2: deviceid 50081, firmware 6.32"
    z6.close()


def test_home_then_absolute_and_relative_moves_land_on_target(bench):
    axes, serve = bench
    z = connect(serve()[2])
    x = z.axis("1.1", "x", limits_m=TRAVEL_M)
    with pytest.raises(InstrumentError, match="WR .*home the axis first"):
        x.move_to(0.010)
    assert axes[1][0].true_position_m() == pytest.approx(0.012)  # nothing moved
    x.home()
    assert x.position_m() == pytest.approx(0.0)
    x.move_to(0.010)
    assert x.position_m() == pytest.approx(0.010, abs=MICROSTEP_M)
    x.move_by(-0.0025)
    assert x.position_m() == pytest.approx(0.0075, abs=MICROSTEP_M)
    assert axes[1][0].position_m() == pytest.approx(0.0075, abs=MICROSTEP_M)
    z.close()


def test_soft_limit_refusal_sends_nothing(bench):
    _, serve = bench
    vi, _, path = serve()
    z = connect(path)
    seen = vi.faults.commands_seen
    with pytest.raises(LimitError):
        z.axis("1.1", "x", limits_m=(0.001, 0.02)).move_to(0.021)
    assert vi.faults.commands_seen == seen
    z.close()


def test_backlash_compensation_lands_on_the_same_carriage_position_from_both_sides(bench):
    axes, serve = bench
    z = connect(serve()[2])
    sim = axes[2][0]

    def true_position_after(axis, start_m):
        axis.move_to(start_m)
        axis.move_to(0.010)
        return sim.true_position_m()

    plain = z.axis("2", "z", limits_m=TRAVEL_M)
    plain.home()
    spread = true_position_after(plain, 0.015) - true_position_after(plain, 0.005)
    assert spread == pytest.approx(20e-6, abs=2e-6)  # the play shows without compensation

    compensated = z.axis("2", "z", limits_m=TRAVEL_M, backlash_m=50e-6)
    spread = true_position_after(compensated, 0.015) - true_position_after(compensated, 0.005)
    assert spread == pytest.approx(0.0, abs=2e-6)
    z.close()


def test_two_devices_and_two_axes_share_the_port(bench):
    axes, serve = bench
    z = connect(serve()[2])
    targets = {"1.1": 0.003, "1.2": 0.007, "2": 0.011}
    chain = {"1.1": axes[1][0], "1.2": axes[1][1], "2": axes[2][0]}
    handles = {address: z.axis(address, address, limits_m=TRAVEL_M) for address in targets}
    for handle in handles.values():
        handle.home()
    for address, target in targets.items():
        handles[address].move_to(target)
    for address, target in targets.items():
        assert chain[address].position_m() == pytest.approx(target, abs=MICROSTEP_M)
        assert handles[address].position_m() == pytest.approx(target, abs=MICROSTEP_M)
    z.close()


def test_device_limits_reject_and_limits_beyond_the_travel_end_in_an_unexpected_limit(bench):
    axes, serve = bench
    z = connect(serve()[2])
    y = z.axis("1.2", "y", limits_m=(0.0, 0.05))
    y.home()
    with pytest.raises(InstrumentError, match=r"device 1 axis 2 rejected '/1 2 move abs 60472': BADDATA"):
        y.move_to(0.030)
    z.query(1, 2, "set limit.max 100000")
    with pytest.raises(InstrumentError, match="WL .*after the move"):
        y.move_to(0.030)
    assert axes[1][1].true_position_m() == pytest.approx(TRAVEL_M[1])
    y.move_to(0.010)  # acknowledged: the next move works
    assert y.position_m() == pytest.approx(0.010, abs=MICROSTEP_M)
    z.close()


def test_a_stalled_stage_raises_after_the_move(bench):
    axes, serve = bench
    z = connect(serve()[2])
    x = z.axis("1.1", "x", limits_m=TRAVEL_M)
    x.home()
    axes[1][0].stalled = True
    with pytest.raises(InstrumentError, match=r"FS \(stalled and stopped\)"):
        x.move_to(0.005)
    assert x.position_m() == pytest.approx(0.0)
    z.close()


def test_timeout_fault_with_a_short_driver_timeout(bench):
    _, serve = bench
    vi, _, path = serve()
    z = connect(path, timeout_s=0.2)
    vi.faults = FaultPlan(rates={Fault.TIMEOUT: 1.0})
    start = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="zaber: no complete answer in time .*'/1 1 get pos'"):
        z.axis("1", "x").position_m()
    assert time.monotonic() - start < 1.0
    vi.faults = FaultPlan()
    assert z.axis("1", "x").position_m() == 0.0  # not homed: the reading starts at zero
    z.close()


def test_error_fault_is_an_again_rejection(bench):
    _, serve = bench
    vi, _, path = serve()
    z = connect(path)
    vi.faults = FaultPlan(rates={Fault.ERROR: 1.0})
    with pytest.raises(InstrumentError, match="AGAIN"):
        z.axis("2", "z").position_m()
    z.close()


def test_disconnect_is_connection_lost_and_the_device_comes_back(bench):
    _, serve = bench
    vi, link, path = serve()
    z = connect(path, timeout_s=0.5)
    vi.faults = FaultPlan(disconnect_after=1)
    with pytest.raises(ConnectionLost, match="zaber"):
        z.axis("1", "x").position_m()
    z.close()
    link.reconnect()
    again = connect(path)
    assert again.axis("1", "x").position_m() == 0.0
    again.close()


# -- the virtual device, byte for byte, as a third-party client sees it ----------------------------
def exchange(port, command, lines=1):
    port.write(command)
    return b"".join(port.readline() for _ in range(lines))


def test_raw_replies_follow_the_manual(bench):
    _, serve = bench
    _, _, path = serve()
    with serial.Serial(path, 115200, timeout=0.5) as port:
        assert exchange(port, b"/get device.id\r\n", 2) == b"@01 0 OK IDLE WR 50081\r\n@02 0 OK IDLE WR 50081\r\n"
        assert exchange(port, b"/1 get pos\n") == b"@01 0 OK IDLE WR 0 0\r\n"
        assert exchange(port, b"/1 2 home\r") == b"@01 2 OK BUSY WR 0\r\n"
        assert exchange(port, b"/1 2\n") == b"@01 2 OK IDLE -- 0\r\n"
        assert exchange(port, b"/1 warnings\n") == b"@01 0 OK IDLE WR 01 WR\r\n"
        assert exchange(port, b"/1 2 17 move rel 100\n") == b"@01 2 17 OK BUSY -- 0\r\n"
        assert exchange(port, b"/1 2 move abs 99999999\n") == b"@01 2 RJ IDLE -- BADDATA\r\n"
        assert exchange(port, b"/1 2 move abs 1.5\n") == b"@01 2 RJ IDLE -- BADDATA\r\n"
        assert exchange(port, b"/1 3 get pos\n") == b"@01 3 RJ IDLE WR BADAXIS\r\n"
        assert exchange(port, b"/1 1 fly\n") == b"@01 1 RJ IDLE WR BADCOMMAND\r\n"
        assert exchange(port, b"/1 1 get device.id\n") == b"@01 1 RJ IDLE WR DEVICEONLY\r\n"
        assert exchange(port, b"/2 get system.axiscount\n") == b"@02 0 OK IDLE WR 1\r\n"
        assert exchange(port, b"/7 get pos\n/2 1 get limit.max\n") == b"@02 1 OK IDLE WR 50394\r\n"
