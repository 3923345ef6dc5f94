"""``GET /metrics``: Prometheus metrics of one app, observed from the outside of the job system.

Each app owns a :class:`Metrics` with its own ``CollectorRegistry`` (never the library's global
one: tests build many apps, and the project has no module-level singletons). It is fed by:

- the service's event bus (:meth:`~sdrest.jobs.events.EventBus.listen`): jobs accepted and
  finished, job, queue-wait, step and model-load durations;
- the HTTP middleware (:mod:`sdrest.api.observe`): requests by route template and status;
- a collector read at scrape time: queue depth, the running job, loaded models, and the engine's
  worker starts and crashes (:class:`~sdrest.engine.base.EngineInfo`).

Model loads are those a job caused: a generation whose model the engine did not hold when it
started, and holds when it ends (its load time: from its start to its first sampling step).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sdrest.api.routing import SpecRoute, route
from sdrest.auth.principal import SCOPE_KEY, Principal

if TYPE_CHECKING:
    from sdrest.jobs.events import JobEvent
    from sdrest.service import SdrestService

JOB_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LOAD_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

METRICS_CALLER = Principal(username="metrics", role="admin", authenticated=True)
"""The caller a valid ``--metrics-token`` makes, on ``/metrics`` only."""


@dataclass
class _Running:
    """What the listener remembers of a job while it generates."""

    started: float
    model_was_loaded: bool
    first_step_at: float | None = None
    last_step: int = 0


class _ServiceCollector(Collector):
    """What is read from the service when scraped (on the event loop, like every read of it)."""

    def __init__(self, service: SdrestService) -> None:
        self._service = service

    def collect(self) -> Iterable[Metric]:
        """Queue depth, the running job, loaded models, worker starts and crashes."""
        snapshot = self._service.queue_snapshot()
        yield GaugeMetricFamily(
            "sdrest_queue_depth", "Jobs waiting in the queue", value=len(snapshot.queued)
        )
        yield GaugeMetricFamily(
            "sdrest_jobs_running",
            "Jobs the engine is working on (0 or 1)",
            value=int(snapshot.current is not None),
        )
        loaded = GaugeMetricFamily(
            "sdrest_model_loaded", "1 for each model the engine holds", labels=["model"]
        )
        for name in snapshot.loaded_models:
            loaded.add_metric([name], 1)
        yield loaded
        try:
            info = self._service.engine.info()
        except RuntimeError:  # the service has not started: no engine yet
            return
        yield CounterMetricFamily(
            "sdrest_engine_worker_starts",
            "Engine worker processes started (the first one included)",
            value=info.worker_starts,
        )
        yield CounterMetricFamily(
            "sdrest_engine_worker_crashes",
            "Engine worker processes that died unasked (a native crash, the OOM killer)",
            value=info.worker_crashes,
        )


class Metrics:
    """The metrics of one app over one service (``app.state.metrics``)."""

    def __init__(self, service: SdrestService) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        registry = self.registry
        self.jobs_submitted = Counter(
            "sdrest_jobs_submitted",
            "Jobs accepted into the queue",
            ["family", "kind"],
            registry=registry,
        )
        self.jobs_finished = Counter(
            "sdrest_jobs_finished",
            "Jobs that ended, by final state (completed, failed, cancelled)",
            ["family", "kind", "state"],
            registry=registry,
        )
        self.job_duration = Histogram(
            "sdrest_job_duration_seconds",
            "Seconds from a job's start on the engine to its end",
            ["kind", "model"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "sdrest_job_queue_wait_seconds",
            "Seconds a job waited in the queue before it started",
            ["kind", "model"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.step_duration = Histogram(
            "sdrest_step_duration_seconds",
            "Seconds per sampling step, as the engine measured them",
            ["model"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self._define_load_and_http_metrics(registry)
        registry.register(_ServiceCollector(service))
        self._running: dict[str, _Running] = {}
        self._accepted: set[str] = set()
        """The unfinished jobs this node accepted: the ones it counts."""
        self._stop_listening = service.events.listen(self.on_event)

    def _define_load_and_http_metrics(self, registry: CollectorRegistry) -> None:
        """The model-load and HTTP metrics (the job metrics are defined in ``__init__``)."""
        self.model_loads = Counter(
            "sdrest_model_loads", "Model loads a job caused", ["model"], registry=registry
        )
        self.model_load_failures = Counter(
            "sdrest_model_load_failures",
            "Jobs that failed because their model did not load",
            ["model"],
            registry=registry,
        )
        self.model_load_duration = Histogram(
            "sdrest_model_load_seconds",
            "Seconds from a job's start to its first sampling step, when the job loaded its model",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=registry,
        )
        self.http_requests = Counter(
            "sdrest_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "sdrest_http_request_duration_seconds",
            "Seconds to answer an HTTP request (a streamed answer: until its end)",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )

    def close(self) -> None:
        """Stop listening to the service's events."""
        self._stop_listening()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (read on the event loop)."""
        return generate_latest(self.registry)

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered HTTP request."""
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    # -- the event bus ---------------------------------------------------------------------

    def on_event(self, event: JobEvent) -> None:
        """Called by the event bus for every job event. A node counts the jobs it accepted
        (with ``--database-url`` the others' reach it through the relay, and are counted where
        they were accepted), each once, however often it goes back to the queue."""
        job = event.job
        if event.type == "state" and job.status == "queued":
            if not event.relayed and job.id not in self._accepted:
                self._accepted.add(job.id)
                self.jobs_submitted.labels(job.family, job.kind).inc()
            return
        if event.type == "deleted" or job.id not in self._accepted:
            return  # counted when it finished; or another node's job
        if event.type == "progress":
            self._on_progress(event)
        elif job.status == "generating":
            if job.id not in self._running:
                loaded = job.model in self.service.models.loaded
                self._running[job.id] = _Running(time.monotonic(), loaded)
        elif job.finished:
            self._on_finished(event)

    def _on_progress(self, event: JobEvent) -> None:
        job, progress = event.job, event.job.progress
        running = self._running.get(job.id)
        if running is None or progress.phase != "sampling" or progress.step <= 0:
            return
        if running.first_step_at is None:
            running.first_step_at = time.monotonic()
        if progress.step < running.last_step:  # a second pass (hires fix) counts again
            running.last_step = 0
        if progress.step != running.last_step and progress.seconds_per_step > 0:
            self.step_duration.labels(job.model).observe(progress.seconds_per_step)
        running.last_step = progress.step

    def _on_finished(self, event: JobEvent) -> None:
        job = event.job
        self._accepted.discard(job.id)
        self.jobs_finished.labels(job.family, job.kind, job.status).inc()
        if job.started is not None:
            self.queue_wait.labels(job.kind, job.model).observe(max(0.0, job.started - job.created))
            if job.completed is not None:
                duration = max(0.0, job.completed - job.started)
                self.job_duration.labels(job.kind, job.model).observe(duration)
        running = self._running.pop(job.id, None)
        if running is None or job.kind != "img_gen":
            return
        if job.error is not None and job.error.code == "model_load_failed":
            self.model_load_failures.labels(job.model).inc()
        elif not running.model_was_loaded and job.model in self.service.models.loaded:
            loaded_at = running.first_step_at or time.monotonic()
            self.model_loads.labels(job.model).inc()
            self.model_load_duration.labels(job.model).observe(loaded_at - running.started)


# -- the endpoint ----------------------------------------------------------------------------


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics (text format): jobs, queue, durations, model loads, worker starts
    and crashes, HTTP requests by route."""
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class MetricsTokenGate:
    """Wraps the ``/metrics`` route: a request bearing the metrics token is let in as
    :data:`METRICS_CALLER` (that route only); any other goes to the route's own access rule."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        presented = _bearer(scope)
        if presented is not None and hmac.compare_digest(presented.encode(), self._token):
            scope = {**scope, SCOPE_KEY: METRICS_CALLER}
        await self.app(scope, receive, send)


def metrics_route(token: str) -> SpecRoute:
    """``GET /metrics`` for admins (anyone while authentication is off), and for the bearer of
    ``token`` when one is set."""
    result = route(
        "/metrics", metrics_endpoint, access="system:manage", media_types=("text/plain",)
    )
    if token:
        result.app = MetricsTokenGate(result.app, token)
    return result
