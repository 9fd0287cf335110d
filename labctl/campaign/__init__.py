"""labctl.campaign."""
