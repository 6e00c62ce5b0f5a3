"""The composition root: build settings, registry, engine (thread + process), window; then run Qt.

Nothing here imports an ML library: the window shows first, and the engine process imports a
backend (torch, ONNX Runtime) only when the first job needs it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Optional, Sequence

_T0 = time.perf_counter()  # fallback start time when the launcher gives no STUDIO_T0

log = logging.getLogger("studio")
APP_ID = "io.github.studio.Studio"  # the desktop entry, metainfo and icon name in packaging/


def configure_logging() -> None:
    """Everything, tracebacks included, to studio.log; the person sees one sentence in the window."""
    from studio.core.logs import configure_logging as log_to_file
    from studio.models import paths

    log_to_file(paths.log_dir())

    def log_uncaught(exc_type, exc, tb) -> None:
        # An exception escaping a Qt slot would otherwise only reach a console nobody is reading.
        log.critical("uncaught exception", exc_info=(exc_type, exc, tb))
        sys.__excepthook__(exc_type, exc, tb)

    sys.excepthook = log_uncaught


def seconds_since_start() -> float:
    """Seconds since the process started: from STUDIO_T0 (the launcher's time.time()) when set."""
    t0 = os.environ.get("STUDIO_T0")
    if t0:
        try:
            return time.time() - float(t0)
        except ValueError:
            pass
    return time.perf_counter() - _T0


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="studio-gui", description="Studio: an offline generative studio.")
    parser.add_argument(
        "--quit-after-show",
        action="store_true",
        help='print "window-shown <seconds>" once the window is on screen, then quit (benchmarks)',
    )
    args, qt_args = parser.parse_known_args(list(argv))
    args.quit_after_show = args.quit_after_show or os.environ.get("STUDIO_QUIT_AFTER_SHOW") == "1"
    return args, qt_args


class Studio:
    """The running studio's parts, wired together: registry, engine thread, jobs, main window."""

    def __init__(self, registry=None, isolated: bool = True):
        """`isolated`: jobs run in a supervised engine process (the default; a crash in native
        code costs a job, not the window). False runs them on the engine thread itself."""
        from studio.core.settings import Settings
        from studio.engine.cache import ModelCache
        from studio.engine.host.supervisor import EngineProcess, RunnerRecipe
        from studio.engine.runner import Runner
        from studio.models import paths
        from studio.models.registry import ModelRegistry, default_roots
        from studio.state.engine_thread import EngineThread
        from studio.state.gui_thread_gc import GuiThreadGarbageCollector
        from studio.state.jobs import JobList
        from studio.ui.main_window import MainWindow

        # Before any thread starts: cyclic garbage holding a QObject must be freed on this thread.
        self.collector = GuiThreadGarbageCollector()
        self.settings = Settings.load(paths.settings_file())
        self.registry = registry or ModelRegistry(default_roots(self.settings.model_dirs))
        budget = self.settings.cache_budget_mb * 1024 * 1024
        host = (
            EngineProcess(RunnerRecipe(self.registry, budget))
            if isolated
            else Runner(self.registry, ModelCache(budget))
        )
        self.engine = EngineThread(host)
        self.jobs = JobList(self.engine)
        # The window first: if building it fails, no engine thread is left running. Jobs it queues
        # meanwhile wait in the engine's queue until the thread starts.
        self.window = MainWindow(self.jobs, self.registry)
        self.engine.start()

    def shutdown(self) -> None:
        """Cancel jobs and wait for the engine thread, however long (never terminate it)."""
        self.jobs.shutdown()
        self.collector.stop()  # no thread of ours runs Python now


def make_app(qt_args: Sequence[str] = ()):
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from studio.models.paths import RESOURCES_DIR

    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    if not isinstance(app, QApplication):  # a QCoreApplication made earlier in this process cannot show windows
        raise RuntimeError("The studio needs a QApplication, but this process already made a QCoreApplication.")
    app.setOrganizationName("studio")
    app.setApplicationName("studio")
    app.setApplicationDisplayName("Studio")
    # The desktop entry's id (packaging/): Wayland matches the window to the entry, and its icon, by it.
    app.setDesktopFileName(APP_ID)
    app.setWindowIcon(QIcon(str(RESOURCES_DIR / "icons" / f"{APP_ID}.svg")))
    return app


def main(argv: Optional[Sequence[str]] = None) -> int:
    from studio.models.paths import offline

    offline()  # before anything imports huggingface_hub: the studio never downloads or phones home
    args, qt_args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging()
    from studio.ui.platform_check import problem

    cannot_start = problem()
    if cannot_start:  # one sentence, before Qt would print its plugin diagnostics and abort
        log.error("the window cannot start: %s", cannot_start)
        print(f"studio: {cannot_start}", file=sys.stderr)
        return 1
    app = make_app(qt_args)
    studio = Studio()
    app.aboutToQuit.connect(studio.shutdown)  # in case the app quits without the window closing
    log.info("studio starting: %d models, %d problems", len(studio.registry.models()), len(studio.registry.problems))
    if args.quit_after_show:
        _report_when_shown(app, studio.window)
    studio.window.show()
    code = app.exec()
    studio.shutdown()
    return code


def _report_when_shown(app, window) -> None:
    """Print "window-shown <seconds>" after the window's first frame is painted, then close it."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    class FirstExpose(QObject):
        def eventFilter(self, obj, event) -> bool:  # noqa: N802
            if event.type() == QEvent.Type.Expose and obj.isExposed() and not getattr(self, "done", False):
                self.done = True
                QTimer.singleShot(0, report)  # after this expose has been painted
            return False

    def report() -> None:
        print(f"window-shown {seconds_since_start():.3f}", flush=True)
        log.info("window shown; torch imported: %s", "torch" in sys.modules)
        window.close()
        app.quit()

    window.winId()  # create the native window now, so its QWindow exists to be watched
    watcher = FirstExpose(window)
    window.windowHandle().installEventFilter(watcher)


if __name__ == "__main__":
    raise SystemExit(main())
