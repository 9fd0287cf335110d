"""Virtual instruments: one per driver family, following the vendor protocols."""
