"""Write the driver-options section of docs/station.md from the declarations in labctl/drivers/options.py.

    python scripts/station_options_doc.py           # rewrite the section
    python scripts/station_options_doc.py --check   # exit 1 if the file is out of date

tests/drivers/test_options.py runs the same comparison, so a declaration changed without this
script fails the suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

from labctl.drivers.options_doc import with_options

DOC = Path(__file__).resolve().parents[1] / "docs" / "station.md"


def main(argv: list[str]) -> int:
    current = DOC.read_text(encoding="utf-8")
    wanted = with_options(current)
    if "--check" in argv:
        if wanted != current:
            print(f"{DOC}: the driver options are out of date; run python scripts/station_options_doc.py")
            return 1
        return 0
    DOC.write_text(wanted, encoding="utf-8")
    print(f"{DOC}: driver options written")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
