"""The bounded queue and the SQLite store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sdrest.errors import QueueFullError
from sdrest.jobs import JobQueue, JobStore
from sdrest.schemas import ImgGenRequest, Job, JobError


async def test_queue_fifo_bound_positions_and_removal() -> None:
    queue = JobQueue(capacity=2)
    queue.push("a")
    queue.push("b")
    with pytest.raises(QueueFullError):
        queue.push("c")
    queue.push("r", force=True)  # recovered jobs are never refused
    assert [queue.position(i) for i in ("a", "b", "r", "x")] == [1, 2, 3, 0]
    assert queue.remove("b") and not queue.remove("b")
    assert await queue.pop() == "a"
    waiter = asyncio.create_task(queue.pop())
    assert await waiter == "r"
    late = asyncio.create_task(queue.pop())
    await asyncio.sleep(0)
    queue.push("z")
    assert await asyncio.wait_for(late, 1) == "z"


async def test_operations_wait_their_turn_and_do_not_count_against_the_bound() -> None:
    queue = JobQueue(capacity=1)
    queue.push("a")
    ran: list[str] = []

    async def operation() -> None:
        ran.append("op")

    queued = queue.push_operation(operation)
    queue.push("b", force=True)
    assert len(queue) == 2 and queue.ids() == ["a", "b"] and queue.position("b") == 3
    assert await queue.pop() == "a"
    item = await queue.pop()
    assert item is queued and not queued.done.done()
    await queued.run()
    assert ran == ["op"] and queued.done.done()
    assert await queue.pop() == "b"
    assert await queue.pop(timeout=0.05) is None  # idle: the consumer may unload
    dropped = queue.push_operation(operation)
    assert queue.remove(dropped) and await queue.pop(timeout=0) is None


async def test_a_failing_operation_hands_its_error_to_the_caller() -> None:
    queue = JobQueue(capacity=1)

    async def broken() -> None:
        raise ValueError("no such model")

    queued = queue.push_operation(broken)
    await queued.run()
    with pytest.raises(ValueError, match="no such model"):
        await queued.done


async def test_store_round_trip_and_expiry(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "db.sqlite3")
    await store.open()
    job = Job(
        id="job_1_aa",
        kind="img_gen",
        created=time.time(),
        request=ImgGenRequest(prompt="p", init_image="AAAA"),
    )
    await store.insert(job)
    job.status, job.completed, job.error = "failed", time.time() - 100, JobError("x", "y")
    await store.update(job)
    loaded = await store.get(job.id, with_request=True)
    assert loaded is not None and loaded.status == "failed" and loaded.error == JobError("x", "y")
    assert loaded.request is None  # a finished job's payload is dropped: only its summary stays
    summary = (await store.get(job.id)).request  # type: ignore[union-attr]
    assert summary is not None and summary.prompt == "p" and summary.init_image is None
    assert await store.expire(time.time() - 50) == [job.id]
    assert (await store.get(job.id)).expired  # type: ignore[union-attr]
    assert await store.expire(time.time()) == []
    await store.close()


async def test_store_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = JobStore(path)
    await store.insert(Job(id="job_2_bb", kind="img_gen", created=1.0, request=ImgGenRequest()))
    await store.close()
    again = JobStore(path)
    pending = await again.unfinished()
    assert [j.id for j in pending] == ["job_2_bb"] and pending[0].request == ImgGenRequest()
    await again.close()


async def test_listings_carry_the_request_without_its_images(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    request = ImgGenRequest(prompt="a cat", width=320, init_image="A" * 100_000, mask_image="B")
    job = Job(id="job_1_a", kind="img_gen", created=time.time(), request=request)
    await store.insert(job)
    listed = (await store.list())[0]
    assert listed.request is not None and listed.request.prompt == "a cat"
    assert listed.request.width == 320 and not listed.request.has_images
    by_id = await store.get("job_1_a")
    assert by_id is not None and by_id.request == listed.request
    full = await store.get("job_1_a", with_request=True)
    assert full is not None and full.request == request  # recovery still gets the images
    await store.close()


async def test_a_database_without_summaries_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the schema before the summary column
        db.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, owner TEXT NOT NULL"
            " DEFAULT '', created REAL NOT NULL, completed REAL, expired INTEGER NOT NULL"
            " DEFAULT 0, request BLOB, state BLOB NOT NULL)"
        )
    store = JobStore(path)
    job = Job(id="job_2_b", kind="img_gen", created=time.time(), request=ImgGenRequest(prompt="x"))
    await store.insert(job)
    assert (await store.list())[0].request == ImgGenRequest(prompt="x")
    await store.close()


async def test_payloads_of_finished_jobs_are_dropped_on_open(tmp_path: Path) -> None:
    """Older versions kept a finished job's request (its images): opening drops it, so listings
    never walk through it; the summary stays."""
    import sqlite3

    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path)
    request = ImgGenRequest(prompt="kept", init_image="A" * 10_000)
    await store.insert(Job(id="job_3_c", kind="img_gen", created=time.time(), request=request))
    await store.insert(Job(id="job_4_d", kind="img_gen", created=time.time(), request=request))
    await store.close()
    with sqlite3.connect(path) as db:  # finished as an older version would have written it
        db.execute("UPDATE jobs SET status = 'completed' WHERE id = 'job_3_c'")
    again = JobStore(path)
    done = await again.get("job_3_c", with_request=True)
    assert done is not None and done.request is None
    summary = await again.get("job_3_c")
    assert summary is not None and summary.request is not None and summary.request.prompt == "kept"
    queued = await again.get("job_4_d", with_request=True)
    assert queued is not None and queued.request == request  # still needed to run it
    await again.close()
