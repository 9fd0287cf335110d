"""labctl.gui."""
