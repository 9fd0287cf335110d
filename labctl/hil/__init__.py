"""labctl.hil: hardware in the loop, what the bench itself can still teach a printed network.

``encoding`` holds what an SLM can change about the inputs; ``pat`` trains it (with the readout,
and the plates' heights of a replacement plate) by physics-aware training: the bench's measured
readings as the forward pass, the twin's adjoint as the backward pass. ``identified`` reads a
bench's calibration folder for a replacement plate (``labctl design refine``): the twin it
identified, checked against the design and the station.
"""
