"""The engine in a supervised worker process (the default ``engine_mode``).

The server never imports the native library: :class:`WorkerEngine` starts
``python -m sdrest.engine.worker`` and sends it one call at a time over a socket pair. What the
supervision buys:

* a native crash (SIGSEGV, a GGML_ASSERT's SIGABRT, any exit) fails only the running call, as
  :class:`~sdrest.errors.EngineCrashedError` with the signal and the last native log lines; a
  fresh worker is started at once and the queue goes on;
* :meth:`WorkerEngine.abort` stops a running generation within milliseconds by killing the
  worker (the library has no gentler way), then starts a new one;
* unloading stops the worker, so every byte the library held goes back to the system.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import socket
import subprocess
import threading
from contextvars import Context
from dataclasses import replace

import msgspec
from PIL import Image

from sdrest.engine import wire
from sdrest.engine.base import (
    ConvertPlan,
    EngineInfo,
    GenerationPlan,
    ModelSpec,
    PreviewFn,
    ProgressFn,
    UpscalePlan,
)
from sdrest.engine.launch import LaunchedWorker, worker_argv, worker_env
from sdrest.errors import EngineAbortedError, EngineCrashedError

logger = logging.getLogger(__name__)
native_logger = logging.getLogger("sdrest.native")

START_TIMEOUT = 120.0
"""Seconds a new worker may take to import the library (a GPU backend initialises here)."""
STOP_TIMEOUT = 5.0
_RECENT_LINES = 12


class _WorkerGone(Exception):
    """The socket closed under a call: the worker exited."""


class _AdoptedProcess:
    """What the supervision uses of asyncio's ``Process``, over a process started before the
    event loop (:class:`~sdrest.engine.launch.LaunchedWorker`). A thread waits for its exit, as
    asyncio's own child watcher does for the processes it starts."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self.pid = process.pid
        loop = asyncio.get_running_loop()
        self._exit: asyncio.Future[int] = loop.create_future()

        def exited(code: int) -> None:
            if not self._exit.done():
                self._exit.set_result(code)

        def reap() -> None:
            code = process.wait()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(exited, code)

        threading.Thread(target=reap, name="sdrest-worker-reap", daemon=True).start()

    @property
    def returncode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    def kill(self) -> None:
        self._process.kill()  # a no-op once the process has been reaped

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)


class _Worker:
    """One running worker process and its socket."""

    def __init__(
        self,
        process: asyncio.subprocess.Process | _AdoptedProcess,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        output: asyncio.Task[None],
    ) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.output = output
        self.killed = False
        """Killed on purpose (an abort): its end is not a crash, and it takes no more calls."""
        self.watch: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and not self.killed

    def kill(self) -> None:
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    async def wait_exit(self) -> str:
        """Wait for the process to end; how it ended, in words (``SIGABRT``, ``exit status 1``)."""
        code = await self.process.wait()
        with contextlib.suppress(asyncio.TimeoutError):  # its last output says why it died
            await asyncio.wait_for(asyncio.shield(self.output), 1.0)
        if code < 0:
            try:
                return signal.Signals(-code).name
            except ValueError:
                return f"signal {-code}"
        return f"exit status {code}"


class WorkerEngine:
    """:class:`sdrest.engine.base.Engine` over the real library in a supervised worker process."""

    supports_abort = True

    def __init__(
        self, memory_budget: int = 0, *, nice: int = 0, launched: LaunchedWorker | None = None
    ) -> None:
        self.memory_budget = memory_budget
        self.nice = nice
        """Niceness the worker adds to itself: the server's loop stays responsive while the
        library keeps every core busy (``--worker-nice``)."""
        self.env: dict[str, str] = {}
        """Extra environment of the worker process (``--devices``: the GPU it may see)."""
        self._codec = wire.Codec()
        self._lock = asyncio.Lock()
        """One call at a time: the worker serves calls in order and a call owns the socket."""
        self._worker: _Worker | None = None
        self._loaded: list[str] = []
        self._in_call = False
        self._recent: collections.deque[str] = collections.deque(maxlen=_RECENT_LINES)
        self._starts = 0
        self._crashes = 0
        self._background: set[asyncio.Task[None]] = set()
        self._last_ready: wire.Ready | None = None
        self._launched = launched
        """A worker started before the event loop (``sdrest serve``), adopted on the first call;
        its budget and niceness were sent to it ahead (``ConfigureCall``)."""

    # -- Engine protocol ---------------------------------------------------------------------

    @property
    def loaded_model(self) -> str | None:
        """Name of the most recently used loaded model, if any."""
        return self._loaded[-1] if self._loaded else None

    def info(self) -> EngineInfo:
        """The worker's pid, version and history (starts, crashes)."""
        worker = self._worker if self._worker is not None and self._worker.alive else None
        ready = self._last_ready
        return EngineInfo(
            mode="worker",
            loaded_models=tuple(self._loaded),
            library_version=ready.library_version if ready else None,
            system_info=ready.system_info if ready else None,
            worker_pid=worker.process.pid if worker is not None else None,
            worker_starts=self._starts,
            worker_crashes=self._crashes,
        )

    async def generate(
        self,
        plan: GenerationPlan,
        on_progress: ProgressFn,
        on_preview: PreviewFn | None = None,
    ) -> list[Image.Image]:
        """Generate in the worker; the request's base64 images stay here (the plan carries
        them decoded)."""
        call = wire.GenerateCall(
            replace(plan, request=plan.request.without_images()), on_preview is not None
        )
        return await self._exchange(call, on_progress, on_preview)

    async def upscale(self, plan: UpscalePlan, on_progress: ProgressFn) -> Image.Image:
        """ESRGAN upscale in the worker."""
        (image,) = await self._exchange(wire.UpscaleCall(plan), on_progress)
        return image

    async def convert(self, plan: ConvertPlan, on_progress: ProgressFn) -> None:
        """Quantize a model file in the worker."""
        await self._exchange(wire.ConvertCall(plan), on_progress)

    async def load(self, spec: ModelSpec) -> None:
        """Load (or keep) a model context in the worker."""
        await self._exchange(wire.LoadCall(spec), lambda _p: None)

    async def unload(self, name: str | None = None) -> None:
        """Free model ``name`` in the worker; without a name free everything by stopping the
        worker (the next call starts a fresh one), so all its memory goes back to the system."""
        if name is not None:
            await self._exchange(wire.UnloadCall(name), lambda _p: None)
            return
        async with self._lock:
            await self._stop_worker()

    async def abort(self) -> None:
        """Stop the running call now: the worker is killed and a fresh one started."""
        worker = self._worker
        if self._in_call and worker is not None and worker.alive:
            logger.info("stopping the engine worker (pid %d) to abort a call", worker.process.pid)
            worker.kill()

    async def close(self) -> None:
        """Stop the worker and any restart under way."""
        for task in list(self._background):
            task.cancel()
        async with self._lock:
            await self._stop_worker()

    # -- the worker's life -------------------------------------------------------------------

    async def _start_worker(self) -> _Worker:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                *worker_argv(theirs.fileno(), self.memory_budget, self.nice),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=worker_env(self.env),
            )
        except OSError as exc:
            ours.close()
            raise EngineCrashedError(f"the engine worker could not be started: {exc}") from exc
        finally:
            theirs.close()
        assert process.stdout is not None
        return await self._handshake(process, ours, process.stdout)

    async def _adopt(self, launched: LaunchedWorker) -> _Worker:
        """Take over a worker started before the loop, and settle the calls sent to it ahead
        (the default model's load): their answers come before those of our own calls."""
        stdout = asyncio.StreamReader()
        assert launched.process.stdout is not None
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdout), launched.process.stdout
        )
        worker = await self._handshake(_AdoptedProcess(launched.process), launched.socket, stdout)
        for call in launched.sent:
            try:
                reply = await self._next_reply(worker)
                while not isinstance(reply, wire.Done | wire.Failed):  # progress: nobody waits
                    reply = await self._next_reply(worker)
            except (_WorkerGone, ConnectionError) as exc:
                raise await self._worker_died(worker, call) from exc
            self._loaded = reply.loaded
            if isinstance(reply, wire.Failed):  # the caller's own call retries and reports it
                logger.debug("the call sent ahead failed: %s", reply.message)
        return worker

    async def _handshake(
        self,
        process: asyncio.subprocess.Process | _AdoptedProcess,
        sock: socket.socket,
        stdout: asyncio.StreamReader,
    ) -> _Worker:
        """Wait for a new worker's ``Ready`` (the library imported)."""
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        # Fresh contexts: the worker outlives the job whose call started it, so its tasks must
        # not log with that job's id (sdrest.logs.JOB_ID).
        output = asyncio.create_task(
            self._pump_output(stdout), name="sdrest-worker-out", context=Context()
        )
        worker = _Worker(process, reader, writer, output)
        self._starts += 1
        try:
            reply = await asyncio.wait_for(self._next_reply(worker), START_TIMEOUT)
        except (TimeoutError, _WorkerGone) as exc:
            worker.kill()
            how = await worker.wait_exit()
            raise EngineCrashedError(
                f"the engine worker did not start ({how}){self._last_lines()}"
            ) from exc
        if not isinstance(reply, wire.Ready):
            raise EngineCrashedError(f"the engine worker said {type(reply).__name__} first")
        self._last_ready = reply
        worker.watch = asyncio.create_task(
            self._watch_idle(worker), name="sdrest-worker-watch", context=Context()
        )
        logger.info("engine worker started (pid %d)", reply.pid)
        return worker

    async def _watch_idle(self, worker: _Worker) -> None:
        """A worker that dies between calls (the OOM killer, a signal from outside) is noticed
        at once: it no longer holds models, and the next call starts a fresh one."""
        await worker.process.wait()
        if self._worker is worker and not self._in_call and not worker.killed:
            how = await worker.wait_exit()
            self._crashes += 1
            self._worker, self._loaded = None, []
            worker.output.cancel()
            logger.error("the engine worker died between jobs (%s)%s", how, self._last_lines())

    async def _ensure_worker(self) -> _Worker:
        if self._worker is None or not self._worker.alive:
            launched, self._launched = self._launched, None
            await self._stop_worker()  # one killed after its call had ended: reap it
            if launched is not None:
                self._worker = await self._adopt(launched)
            else:
                self._worker = await self._start_worker()
        return self._worker

    async def _stop_worker(self) -> None:
        launched, self._launched = self._launched, None
        if launched is not None:  # never adopted: closed (by a thread: it may wait a moment)
            await asyncio.to_thread(launched.close)
        worker, self._worker = self._worker, None
        self._loaded = []
        if worker is None:
            return
        worker.writer.close()  # EOF: the worker exits on its own
        try:
            await asyncio.wait_for(worker.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            worker.kill()
            await worker.process.wait()
        worker.output.cancel()
        if worker.watch is not None:
            worker.watch.cancel()

    def _restart_soon(self) -> None:
        """A fresh worker right away, so the next job does not wait for the import."""

        async def restart() -> None:
            async with self._lock:
                try:
                    await self._ensure_worker()
                except EngineCrashedError:
                    logger.exception("the engine worker cannot be restarted")

        task = asyncio.get_running_loop().create_task(restart(), name="sdrest-worker-restart")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- calls -------------------------------------------------------------------------------

    async def _exchange(
        self,
        call: wire.Call,
        on_progress: ProgressFn,
        on_preview: PreviewFn | None = None,
    ) -> list[Image.Image]:
        async with self._lock:
            worker = await self._ensure_worker()
            self._in_call = True
            self._recent.clear()  # a crash report quotes this call's lines only
            answered = False
            try:
                worker.writer.write(self._codec.frame(call))
                await worker.writer.drain()
                while True:
                    reply = await self._next_reply(worker)
                    if isinstance(reply, wire.ProgressEvent):
                        on_progress(reply.progress)
                    elif isinstance(reply, wire.PreviewEvent):
                        if on_preview is not None:
                            on_preview(reply.step, reply.image)
                    elif isinstance(reply, wire.Done | wire.Failed):
                        answered = True
                        self._loaded = reply.loaded
                        if isinstance(reply, wire.Failed):
                            wire.raise_failure(reply)
                        return reply.images  # type: ignore[union-attr]
            except (_WorkerGone, ConnectionError) as exc:
                raise await self._worker_died(worker, call) from exc
            finally:
                self._in_call = False
                if not answered and worker.alive:
                    # Left mid-call (the server stopping, a callback that raised): the worker is
                    # still busy and its late replies would answer the next call. End it.
                    worker.kill()
                    self._loaded = []

    async def _worker_died(self, worker: _Worker, call: wire.Call) -> Exception:
        how = await worker.wait_exit()
        self._worker, self._loaded = None, []
        self._restart_soon()
        if worker.killed:
            return EngineAbortedError("the running job was stopped")
        self._crashes += 1
        doing = type(call).__name__.removesuffix("Call").lower()
        logger.error("the engine worker crashed (%s) during %s", how, doing)
        return EngineCrashedError(
            f"the engine worker crashed ({how}) during {doing}; it was restarted and this job"
            f" was not retried{self._last_lines()}"
        )

    async def _next_reply(self, worker: _Worker) -> wire.Reply:
        """The next message that is not a log line (log lines are logged on the way)."""
        while True:
            try:
                header = await worker.reader.readexactly(wire.HEADER.size)
                (size,) = wire.HEADER.unpack(header)
                reply = self._codec.reply(await worker.reader.readexactly(size))
            except asyncio.IncompleteReadError as exc:
                raise _WorkerGone() from exc
            except msgspec.DecodeError as exc:  # never user input: a broken worker, end it
                logger.error("the engine worker sent an unreadable message: %s", exc)
                worker.process.kill()  # not worker.kill(): this end is a crash, not an abort
                raise _WorkerGone() from exc
            if not isinstance(reply, wire.LogLine):
                return reply
            logging.getLogger(reply.logger).log(reply.level, "%s", reply.message)
            if reply.logger == native_logger.name and reply.level >= logging.INFO:
                self._recent.append(reply.message)

    async def _pump_output(self, stream: asyncio.StreamReader) -> None:
        """What the worker writes outside logging (a GGML_ASSERT, a traceback) is logged and
        kept for the crash report."""
        while line := await stream.readline():
            text = line.decode("utf-8", errors="replace").rstrip()
            if text:
                native_logger.warning("%s", text)
                self._recent.append(text)

    def _last_lines(self) -> str:
        lines = [line for line in self._recent if line.strip()]
        self._recent.clear()
        return "; last native log lines: " + " | ".join(lines[-6:]) if lines else ""
