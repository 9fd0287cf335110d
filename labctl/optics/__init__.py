"""labctl.optics."""
