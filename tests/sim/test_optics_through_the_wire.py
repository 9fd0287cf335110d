"""Move a plate with its stages (real drivers, real links) and see the detectors change as the optics says."""

from __future__ import annotations

import numpy as np

from labctl.bench import Bench
from labctl.optics import embed_image
from labctl.sim.bench import SimulatedBench
from labctl.sim.truth import Truth
from tests.tiny import tiny_design, tiny_images

IMAGES, _ = tiny_images(6)


def test_moving_a_plate_changes_the_readings_as_the_optics_model_predicts(tmp_path):
    design = tiny_design()
    masks = lambda key: IMAGES[int(key.rsplit("/", 1)[1])]  # noqa: E731
    truth = Truth(offset_sigma_m=0.2e-3, noise_v=1e-5)
    with (
        SimulatedBench(design, tmp_path, seed=3, time_scale=0, truth=truth, masks=masks) as sim,
        Bench.from_station(sim.station_path) as bench,
    ):
        for plate in bench.plates.values():
            plate.x.home()
            plate.y.home()
        bench.move_to_nominal()
        sim.load_masks({1: "tiny/test/2"})
        bench.projector.load({1: "tiny/test/2"})
        bench.projector.show("tiny/test/2", IMAGES[2])
        bench.source.output_on()
        world = sim.world
        model = design.model()
        inputs = embed_image(IMAGES[2][None], design.geometry, scale=1)

        def expected_volts() -> np.ndarray:
            """What the hidden truth says the meter must read: dark + gain x optics."""
            energies = model.energies(inputs, design.heights_m, world.plate_offsets_m())[0]
            return (
                world.detectors.dark_v + world.detectors.gain_v * energies * world.signal_scale * world.power_factor()
            )

        before = bench.detectors.read(4).values
        np.testing.assert_allclose(before, expected_volts(), atol=5e-5)
        bench.move_plate("L2", x_m=bench.plate("L2").nominal_m[0] + 0.4e-3)  # one neuron sideways
        after = bench.detectors.read(4).values
        np.testing.assert_allclose(after, expected_volts(), atol=5e-5)
        change = np.abs(after - before)
        assert change.max() > 20 * 5e-5  # the move is seen far above the noise
