"""The app folder's one program (packaging/studio.spec), playing three parts by how it is called:

studio-gui [Qt options]        the window (studio.app)
studio COMMAND ...             the command line (studio.cli); `studio` is a link to studio-gui
studio-gui -P -m MODULE ARGS   a helper process: the studio starts its engine process and other
                               helpers as `python -P -m MODULE` with sys.executable
                               (studio/core/child_python.py), which in the app folder is this
                               program, not a Python interpreter."""

from __future__ import annotations

import multiprocessing
import runpy
import sys
from pathlib import Path


def main() -> int:
    multiprocessing.freeze_support()  # a library's worker processes start this program too
    args = sys.argv[1:]
    if len(args) >= 3 and args[:2] == ["-P", "-m"]:
        sys.argv = [args[2], *args[3:]]
        runpy.run_module(args[2], run_name="__main__", alter_sys=True)
        return 0
    if Path(sys.argv[0]).name == "studio":
        from studio.cli import main as cli

        return cli(args)
    from studio.app import main as window

    return window(args)


if __name__ == "__main__":
    sys.exit(main())
