"""The job store's contract, on SQLite and on PostgreSQL alike: records, the queue, leases."""

from __future__ import annotations

import asyncio
import time

from sdrest.jobs.store import JobStoreBase, NodeInfo, Renewal, WorkerInfo
from sdrest.schemas import ImgGenRequest, Job, JobError

_STOP = JobError("cancelled", "job cancelled by client while generating")


def make_job(n: int, *, model: str = "a", created: float | None = None) -> Job:
    return Job(
        id=f"job_{n:04d}",
        kind="img_gen",
        model=model,
        created=time.time() if created is None else created,
        request=ImgGenRequest(prompt=f"p{n}", init_image="AAAA"),
    )


async def claim(store: JobStoreBase, worker: str = "w1", **kw: object) -> Job | None:
    options: dict[str, object] = {"loaded": (), "affinity_wait": 0.0, "lease": 30.0, **kw}
    return await store.claim(worker, **options)  # type: ignore[arg-type]


async def test_round_trip_listing_and_expiry(any_store: JobStoreBase) -> None:
    job = make_job(1)
    await any_store.insert(job)
    listed = (await any_store.list())[0]
    assert listed.request is not None and listed.request.prompt == "p1"
    assert not listed.request.has_images  # listings never carry the images
    full = await any_store.get(job.id, with_request=True)
    assert full is not None and full.request == job.request
    job.status, job.completed, job.error = "failed", time.time() - 100, JobError("x", "y")
    assert await any_store.update(job)
    loaded = await any_store.get(job.id)
    assert loaded is not None and loaded.status == "failed" and loaded.error == JobError("x", "y")
    assert await any_store.list(statuses=("queued",)) == []
    assert [j.id for j in await any_store.list(owner="", statuses=("failed",))] == [job.id]
    assert await any_store.expire(time.time() - 50) == [job.id]
    gone = await any_store.get(job.id)
    assert gone is not None and gone.expired and await any_store.expire(time.time()) == []


async def test_claims_are_fifo_and_carry_the_full_request(any_store: JobStoreBase) -> None:
    for n in (1, 2, 3):
        await any_store.insert(make_job(n))
    assert await any_store.count_queued() == 3
    first = await claim(any_store)
    assert first is not None and first.id == "job_0001" and first.status == "queued"
    assert first.request is not None and first.request.init_image == "AAAA"
    assert [j.id for j in await any_store.active()] == ["job_0001", "job_0002", "job_0003"]
    second, third = await claim(any_store, "w2"), await claim(any_store, "w3")
    assert second is not None and third is not None
    assert (second.id, third.id) == ("job_0002", "job_0003")
    assert await claim(any_store) is None and await any_store.count_queued() == 0


async def test_affinity_prefers_a_loaded_model_but_never_past_the_wait(
    any_store: JobStoreBase,
) -> None:
    now = time.time()
    await any_store.insert(make_job(1, model="a", created=now))
    await any_store.insert(make_job(2, model="b", created=now))
    got = await claim(any_store, loaded=["b"], affinity_wait=60.0)
    assert got is not None and got.id == "job_0002"  # no reload: b is loaded
    await any_store.insert(make_job(3, model="b", created=now - 120))  # waited past the bound
    await any_store.insert(make_job(4, model="a", created=now))
    got = await claim(any_store, loaded=["a"], affinity_wait=60.0)
    assert got is not None and got.id == "job_0003"


async def test_only_the_holder_writes_and_a_lapsed_lease_requeues_under_the_cap(
    any_store: JobStoreBase,
) -> None:
    await any_store.insert(make_job(1))
    job = await claim(any_store, "w1", lease=0.2)
    assert job is not None
    job.status, job.attempts = "generating", 1
    assert await any_store.update(job, worker="w1")
    assert not await any_store.update(job, worker="w2")  # not its claim
    assert (await any_store.renew(job.id, "w1", 0.2)).held
    assert await any_store.requeue_expired(2) == []  # the lease is fresh
    await asyncio.sleep(0.3)
    requeued = await any_store.requeue_expired(2)
    assert [(j.id, j.status) for j in requeued] == [(job.id, "queued")]
    assert not (await any_store.renew(job.id, "w1", 5)).held  # w1 lost it
    job.status = "completed"
    assert not await any_store.update(job, worker="w1")  # and may not finish it
    again = await claim(any_store, "w2", lease=0.1)
    assert again is not None and again.id == job.id and again.attempts == 1
    again.status, again.attempts = "generating", 2
    assert await any_store.update(again, worker="w2")
    await asyncio.sleep(0.2)
    (failed,) = await any_store.requeue_expired(2)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "server_restarted"
    assert await claim(any_store) is None


async def test_a_released_job_is_requeued_at_once(any_store: JobStoreBase) -> None:
    await any_store.insert(make_job(1))
    job = await claim(any_store, "w1", lease=60.0)
    assert job is not None
    assert not await any_store.release(job.id, "w2")  # not its claim
    assert await any_store.release(job.id, "w1")
    (requeued,) = await any_store.requeue_expired(2)
    assert requeued.id == job.id and requeued.status == "queued"


async def test_cancel_and_stop_from_any_node(any_store: JobStoreBase) -> None:
    await any_store.insert(make_job(1))
    await any_store.insert(make_job(2))
    cancelled = await any_store.cancel_queued("job_0002", JobError("cancelled", "by client"))
    assert cancelled is not None and cancelled.status == "cancelled"
    assert await any_store.cancel_queued("job_0002", _STOP) is None
    running = await claim(any_store)
    assert running is not None and running.id == "job_0001"
    assert await any_store.cancel_queued("job_0001", _STOP) is None  # claimed: not queued
    assert (await any_store.renew("job_0001", "w1", 30)).stop is None
    assert await any_store.request_stop("job_0001", _STOP)
    assert await any_store.renew("job_0001", "w1", 30) == Renewal(True, _STOP)
    assert not await any_store.request_stop("job_0002", _STOP)


async def test_concurrent_claims_never_hand_out_a_job_twice(any_store: JobStoreBase) -> None:
    for n in range(20):
        await any_store.insert(make_job(n))

    async def worker(name: str) -> list[str]:
        taken = []
        while (job := await claim(any_store, name)) is not None:
            taken.append(job.id)
        return taken

    results = await asyncio.gather(*(worker(f"w{i}") for i in range(4)))
    every = [job_id for taken in results for job_id in taken]
    assert sorted(every) == [f"job_{n:04d}" for n in range(20)]


async def test_heartbeats_list_live_nodes(any_store: JobStoreBase) -> None:
    node = NodeInfo(name="n1", role="worker", workers=[WorkerInfo(name="n1/0", job="job_1")])
    await any_store.heartbeat(node)
    (seen,) = await any_store.nodes(within=10)
    assert seen.name == "n1" and seen.workers[0].job == "job_1" and seen.heartbeat > 0
    await any_store.forget_node("n1")
    assert await any_store.nodes(within=10) == []


async def test_delete_removes_only_finished_jobs(any_store: JobStoreBase) -> None:
    for n in (1, 2):
        await any_store.insert(make_job(n))
    running = await claim(any_store)
    assert running is not None and running.id == "job_0001"
    assert not await any_store.delete("job_0001")  # running
    assert not await any_store.delete("job_0002")  # queued
    assert not await any_store.delete("job_0404")  # unknown
    done = await any_store.get("job_0002")
    assert done is not None
    done.status, done.completed = "completed", time.time()
    assert await any_store.update(done)
    payload = await any_store.get("job_0002", with_request=True)
    assert payload is not None and payload.request is None  # finished: the images are dropped
    assert await any_store.delete("job_0002")
    assert await any_store.get("job_0002") is None
    assert [j.id for j in await any_store.list()] == ["job_0001"]
    assert not await any_store.delete("job_0002")  # gone already


async def test_waiting_lists_the_queue_in_order_and_claim_these_takes_what_is_left(
    any_store: JobStoreBase,
) -> None:
    for n in range(1, 6):
        await any_store.insert(make_job(n))
    head = await claim(any_store)
    assert head is not None and head.id == "job_0001"
    waiting = await any_store.waiting(3)
    assert [job.id for job in waiting] == ["job_0002", "job_0003", "job_0004"]
    assert waiting[0].request is not None and waiting[0].request.init_image == "AAAA"  # full
    assert await any_store.cancel_queued("job_0003", _STOP) is not None
    other = await claim(any_store, "w2")  # another worker got there first
    assert other is not None and other.id == "job_0002"
    taken = await any_store.claim_these(["job_0004", "job_0003", "job_0002"], "w1", 30.0)
    assert [job.id for job in taken] == ["job_0004"]  # in the order listed; the rest left
    assert [job.id for job in await any_store.waiting(10)] == ["job_0005"]
    renewal = await any_store.renew("job_0004", "w1", 30.0)
    assert renewal.held  # w1 holds it under a lease like any claim
