"""labctl.design."""
