"""The ``/ws`` WebSocket: job_update, queue_update and system_update messages (being built)."""

from __future__ import annotations

from starlette.websockets import WebSocket


async def websocket_endpoint(websocket: WebSocket) -> None:
    """Serve one WebSocket client."""
    await websocket.close(code=1011)
