"""labctl.design: data sets, training, evaluation and the shipped designs of diffractive networks.

``datasets`` loads images without network access, ``training`` fits plate heights with the
optics model's exact adjoint, ``designfile`` stores a design with its provenance, ``evaluation``
scores it (aligned, misaligned, with absorption or printer steps), ``shipped`` finds the designs
that come with the package. Fabrication export lives in ``fabrication``. See docs/design.md.
"""
