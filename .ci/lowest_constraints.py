"""Print pip constraints pinning every core dependency to the lowest version pyproject allows.

CI installs a second venv with these, so a floor that no longer works (an API we use that
the oldest allowed release lacks, a private Celery/kombu internal that moved) fails a run
instead of a user's install.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_FLOOR = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*(?P<version>[^,;\s]+)")


def main() -> int:
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        match = _FLOOR.match(requirement)
        if match is None:
            print(f"no lower bound in {requirement!r}", file=sys.stderr)
            return 1
        print(f"{match['name']}=={match['version']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
