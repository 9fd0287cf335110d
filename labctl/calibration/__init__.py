"""labctl.calibration."""
