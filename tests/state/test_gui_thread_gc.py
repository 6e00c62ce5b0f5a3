"""Cyclic garbage is collected on the GUI thread, from a timer, never by a collection another
thread happens to set off."""

from __future__ import annotations

import gc
import threading
import weakref

from studio.state.gui_thread_gc import GuiThreadGarbageCollector


class Node:
    def __init__(self):
        self.me = self  # a cycle: only the cyclic collector frees it


def test_cycles_wait_for_the_timer_and_are_freed_on_the_gui_thread(qtbot):
    gc.enable()  # as outside the tests: the collector is what turns automatic collection off
    collector = GuiThreadGarbageCollector(interval_ms=20)
    try:
        assert not gc.isenabled()
        freed_on = []

        class Watched(Node):
            def __del__(self):
                freed_on.append(threading.current_thread().name)

        probe = weakref.ref(Watched())

        def churn():  # another thread allocating past every threshold: no collection runs there
            junk = [Node() for _ in range(50_000)]
            del junk

        worker = threading.Thread(target=churn, name="churn")
        worker.start()
        worker.join()
        assert probe() is not None
        qtbot.waitUntil(lambda: probe() is None, timeout=5_000)
        assert freed_on == [threading.main_thread().name]
    finally:
        collector.stop()
    assert gc.isenabled()
