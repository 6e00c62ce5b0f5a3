"""The install is locked: every dependency pyproject.toml names (the dev extra included) is pinned
to one exact version in requirements/lock.txt that its range allows, and the Makefile installs
from that lock, so a fresh clone gets what CI got."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"


def pins() -> dict[str, Version]:
    found = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", line.strip())
        if match:
            found[canonicalize_name(match[1])] = Version(match[2])
    return found


def test_every_dependency_is_pinned_in_the_lock_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    locked = pins()
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is not in {LOCK.name}: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{LOCK.name} pins {name} {locked[name]}, outside pyproject's {requirement.specifier}: run `make lock`"
        )


def test_torch_is_locked_to_its_cpu_build_and_the_makefile_installs_the_lock():
    assert str(pins()["torch"]).endswith("+cpu")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install -r $(LOCK)" in makefile and "LOCK   := requirements/lock.txt" in makefile
