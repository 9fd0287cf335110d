"""The operator's GUI (PyQt5 + pyqtgraph): a thin layer over the bench and the procedures.

``app.MainWindow`` holds one view per concern (station, source, stages, input, detectors,
alignment, campaign, calibration, log). Views talk to instruments only through the
``session.Session``: instrument calls run on one worker thread, procedures run with their
``Runner`` in a plan thread (``worker.py``), and results come back as Qt signals, so the event
loop never waits on an instrument. Nothing else in labctl depends on this package.
"""
