import threading

import pytest

from studio.core.errors import SpecError
from studio.core.jobs import ImageJob, Lane, LatentDecodeJob
from studio.engine.queue import JobQueue


def test_batch_lane_is_fifo_and_interactive_goes_first():
    q = JobQueue()
    a, b = q.make_job(ImageJob(model="m", seed=1)), q.make_job(ImageJob(model="m", seed=2))
    i = q.make_job(LatentDecodeJob(model="m", latent=(0.0,)))
    q.put(a), q.put(b), q.put(i)
    assert [q.take(0).job_id for _ in range(3)] == [i.job_id, a.job_id, b.job_id]
    assert q.take(timeout=0.01) is None


def test_newest_interactive_request_replaces_the_waiting_one():
    q = JobQueue()
    jobs = [q.make_job(LatentDecodeJob(model="m", latent=(float(k),))) for k in range(5)]
    dropped = [d for j in jobs for d in q.put(j)]
    assert [d.job_id for d in dropped] == [j.job_id for j in jobs[:4]]
    assert q.take(0) is jobs[-1]
    assert len(q) == 0


def test_bad_spec_is_refused_before_queueing():
    q = JobQueue()
    with pytest.raises(SpecError):
        q.make_job(ImageJob(model="m", steps=0))
    assert len(q) == 0


def test_remove_takes_a_queued_job_out():
    q = JobQueue()
    a, b = q.make_job(ImageJob(model="m")), q.make_job(ImageJob(model="m"))
    q.put(a), q.put(b)
    assert q.remove(a.job_id) is a
    assert q.remove(a.job_id) is None
    assert q.take(0) is b


def test_close_wakes_a_blocked_taker_and_returns_waiting_jobs():
    q = JobQueue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.take()))
    t.start()
    q.close()
    t.join(2)
    assert got == [None] and not t.is_alive()
    q2 = JobQueue()
    job = q2.make_job(ImageJob(model="m"), Lane.BATCH)
    q2.put(job)
    assert q2.close() == [job]
