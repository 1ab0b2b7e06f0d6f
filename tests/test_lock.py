"""constraints.txt pins every requirement pyproject.toml declares, at a version it allows.

The image and ./run install with -c constraints.txt; a requirement added or raised in
pyproject.toml without `./run lock` would be installed unpinned or fail to resolve.
"""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.served import REPO
from tools.pyproject_deps import requirements


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


PINS = _pins()
DECLARED = [Requirement(r) for r in requirements(REPO / "pyproject.toml", ["test"])]


@pytest.mark.parametrize("requirement", DECLARED, ids=[r.name for r in DECLARED])
def test_every_declared_requirement_is_pinned(requirement: Requirement) -> None:
    """Each requirement (and each extra it pulls in by name) has a pin its specifier allows."""
    name = canonicalize_name(requirement.name)
    assert name in PINS, f"{requirement} is not in constraints.txt: run ./run lock"
    assert requirement.specifier.contains(PINS[name], prereleases=True), (
        f"constraints.txt pins {name}=={PINS[name]}, outside {requirement}: run ./run lock")


def test_the_build_backend_is_pinned() -> None:
    """The image builds the project with --no-build-isolation, from the pinned setuptools."""
    assert "setuptools" in PINS
