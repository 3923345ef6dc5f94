"""The one job system: queue, durable store and event bus."""

from sdrest.jobs.events import EventBus, JobEvent
from sdrest.jobs.queue import JobQueue
from sdrest.jobs.store import JobStoreBase, open_job_store
from sdrest.jobs.store_sqlite import JobStore

__all__ = ["EventBus", "JobEvent", "JobQueue", "JobStore", "JobStoreBase", "open_job_store"]
