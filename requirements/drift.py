"""Print how the packages installed in this interpreter differ from the lock: `make test-latest`
runs it, so a newer release that the tests then meet is named, not guessed.

    python requirements/drift.py requirements/lock.txt"""

from __future__ import annotations

import re
import sys
from importlib import metadata


def locked(path: str) -> dict[str, str]:
    pins = {}
    with open(path, encoding="utf-8") as lock:
        lines = lock.readlines()
    for line in lines:
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            pins[_canonical(match[1])] = match[2]
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(lock: str) -> int:
    pins = locked(lock)
    installed = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    changes = [
        f"  {name}: {pins[name]} -> {installed[name]}"
        for name in sorted(pins)
        if name in installed and installed[name] != pins[name]
    ]
    changes += [f"  {name}: new, {installed[name]}" for name in sorted(set(installed) - set(pins) - {"studio"})]
    print(f"{len(changes)} package(s) differ from {lock}" + (":" if changes else "."))
    for change in changes:
        print(change)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "requirements/lock.txt"))
