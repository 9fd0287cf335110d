"""labctl.align."""
