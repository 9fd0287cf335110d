"""The simulated wheel's mask library finds masks of a data set given as a folder path (keys with slashes)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.design.datasets import load_dataset
from labctl.errors import ConfigError
from labctl.sim.truth import dataset_masks
from tests.cli.campaign_bench import write_design


def test_a_data_set_folder_path_is_a_mask_name_prefix(tmp_path):
    design, _ = write_design(tmp_path)
    lookup = dataset_masks(design, printed=False)
    data = load_dataset(design.dataset)
    np.testing.assert_array_equal(lookup(f"{design.dataset}/test/3"), data.test_images[3])
    np.testing.assert_array_equal(lookup(f"{design.dataset}/train/0"), data.train_images[0])
    with pytest.raises(ConfigError, match="does not exist"):
        lookup(f"{design.dataset}/test/999")
