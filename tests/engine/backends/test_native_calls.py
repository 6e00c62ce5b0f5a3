"""Native calls on a worker thread: a Stop that cannot end the call retires the engine process
(its failure says the call cannot be interrupted), and an idle worker keeps nothing of its last
call alive (an evicted model's session and arrays are freed)."""

import gc
import threading
import time
import weakref

import pytest

from studio.core.errors import CANNOT_BE_INTERRUPTED, JobCancelled, StudioError
from studio.engine.backends import native
from studio.engine.errors import poisons_device


@pytest.mark.timeout(60)
def test_a_stop_that_cannot_end_the_call_fails_so_the_process_is_replaced():
    cancel, release = threading.Event(), threading.Event()
    threading.Timer(0.1, cancel.set).start()
    with native.job_scope(cancel), pytest.raises(StudioError) as info:
        native.call_bounded(lambda: release.wait(30), 30.0)  # no `stop`: like a tokenizer's encode
    release.set()
    assert CANNOT_BE_INTERRUPTED in info.value.message and poisons_device(info.value.message)


@pytest.mark.timeout(60)
def test_a_stop_the_call_obeys_is_a_plain_cancellation():
    cancel, release = threading.Event(), threading.Event()
    threading.Timer(0.1, cancel.set).start()
    with native.job_scope(cancel), pytest.raises(JobCancelled):
        native.call_bounded(lambda: release.wait(30), 30.0, stop=release.set)


def test_an_idle_worker_holds_nothing_of_its_last_call():
    class Session:
        pass

    holder = {"session": Session()}  # the call takes the only reference but the result's
    probe = weakref.ref(holder["session"])
    result = native.call_bounded(lambda: [holder.pop("session")], 10.0)
    del result
    for _ in range(50):  # the worker drops its reference right after handing the result over
        gc.collect()
        if probe() is None:
            break
        time.sleep(0.02)
    assert probe() is None
