"""How physics-aware training runs (``labctl.hil.pat``), apart from it: the command line reads
its defaults for ``--help`` without importing the optics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl.errors import ConfigError


@dataclass(frozen=True)
class PatOptions:
    """How the training runs: passes over the training images, batch size, reads per image,
    Adam steps (encoding: fraction of full scale; readout: of its weights; plate: metres),
    the readout's pull toward the plain argmax (as ``labctl.readout``), the shuffling seed."""

    epochs: int = 3
    batch: int = 20
    averages: int = 4
    encoding_lr: float = 0.03
    readout_lr: float = 0.01
    plate_lr_m: float = 5e-6
    penalty: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch < 1 or self.averages < 1:
            raise ConfigError(
                f"physics-aware training: epochs, batch and averages must be >= 1, "
                f"got {self.epochs}, {self.batch}, {self.averages}"
            )
        rates = (self.encoding_lr, self.readout_lr, self.plate_lr_m, self.penalty)
        if not all(np.isfinite(v) and v >= 0 for v in rates):
            raise ConfigError(f"physics-aware training: learning rates and penalty must be >= 0, got {rates}")
