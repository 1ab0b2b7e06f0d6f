"""Print the requirements pyproject.toml declares: the runtime ones, plus any extras named.

The Dockerfile installs these before copying the code (so the layer changes only with
pyproject.toml and constraints.txt), and ./run lock resolves them into constraints.txt.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """project.dependencies followed by project.optional-dependencies[extra] for each extra."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    found: list[str] = list(project["dependencies"])
    for extra in extras:
        found += project["optional-dependencies"][extra]
    return found


if __name__ == "__main__":
    here = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("pyproject.toml")
    print("\n".join(requirements(here, sys.argv[2:])))
