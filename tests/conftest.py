"""Shared test settings: Qt runs offscreen, nothing waits on real instrument time."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
