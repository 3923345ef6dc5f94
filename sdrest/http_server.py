"""The HTTP server's own bounds, from the settings: uvicorn's options and a header-read timeout.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive`` and caps connections
with ``limit_concurrency`` (503 past it), but it has no timeout for a request's headers: a client
that connects and then sends its headers a byte at a time (or never) holds a descriptor for as
long as it likes, and a few hundred of them shut everyone else out. :func:`guarded_protocol`
adds that timeout to uvicorn's h11 protocol: from the moment a connection opens, and again from
the end of each answer, the client has ``header_timeout`` seconds to complete its next request's
headers, or the connection is closed. A request whose headers arrived is never cut short (a long
upload or a synchronous generation carries on).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from sdrest.settings import Settings

MAX_HEADER_BYTES = 16 * 1024
"""The most a request line and headers may take (h11's buffer; uvicorn's default, made explicit):
more is a 400 and the connection closes."""


def guarded_protocol(header_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header-read timeout of ``header_timeout`` seconds."""

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            if not self.transport.is_closing():
                self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            # IDLE: the client has not finished a request line and headers since the timer was
            # armed (a request being read or answered is past IDLE; so is a WebSocket upgrade).
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def server_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of :class:`uvicorn.Config` that bound connections."""
    return {
        "http": guarded_protocol(settings.header_timeout),
        "timeout_keep_alive": settings.keep_alive_timeout,
        "limit_concurrency": settings.max_connections or None,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }


def server_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's config for ``app`` on the settings' address, with the bounds above."""
    return uvicorn.Config(
        app, host=settings.host, port=settings.port, **server_options(settings), **options
    )
