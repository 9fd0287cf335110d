"""Plans apart from execution.

A plan (calibration, alignment, a campaign) is a generator of messages (``messages.py``) that
describe steps against a bench of roles; the ``Runner`` (``runner.py``) alone carries them out
and owns progress, pause, resume, abort, safe shutdown and storage. Because a plan is a
description, tests run it as data (``labctl.plans.testing``) and ``--dry-run`` executes it
against the soft limits without moving anything.

(The architecture map put the runner under ``campaign/``; calibration and alignment use it as
much as campaigns do, so it lives here and the three procedures depend on it, not on each other.)
"""
