"""The decode gate: a byte budget on the client images being decoded at one time.

A client image costs memory in proportion to its pixels, not its bytes: a 2 MiB PNG can hold
4096x4096 16-bit pixels, and a handful of them decoded at once would take the server past a GiB.
The service owns one :class:`DecodeGate` (``service.decodes``). Every place that decodes a request
image takes a :class:`DecodeHold` from it (``with gate.hold() as hold:``) and passes the hold to
the decoder (:mod:`sdrest.images`), which reserves the image's cost, read from its header, before
a single pixel is loaded. When the reservations in flight would pass the budget, the decode is
refused with :class:`~sdrest.errors.ServerBusyError` (429 and ``Retry-After``). The hold gives
everything back when the block ends: hold it for as long as the request works on its images
(decoding, converting, resizing).

A request whose own images need more than the whole budget still runs when it is alone (other
limits, ``--max-input-pixels`` and the request's image count, bound it), so a legal request is
never refused forever.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from PIL import Image

from sdrest.errors import ServerBusyError

T = TypeVar("T")
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
_WORKING_BYTES = 4
"""Per pixel, beside the decoded pixels: one RGBA-sized working buffer (the decoder's own, a
conversion or a resize)."""


def decode_cost(image: Image.Image) -> int:
    """Bytes an image costs to decode and work on, from its header (pixels not yet loaded).

    Pillow keeps "1", "L" and "P" at one byte a pixel, 16-bit grey at two and every other mode
    (RGB included) at four; one RGBA-sized working copy comes on top."""
    mode = image.mode
    if mode in _ONE_BYTE_MODES:
        per_pixel = 1
    elif mode.startswith("I;16"):
        per_pixel = 2
    else:
        per_pixel = 4
    width, height = image.size
    return width * height * (per_pixel + _WORKING_BYTES)


class DecodeHold:
    """One request's reservations; given back when its :meth:`DecodeGate.hold` block ends."""

    def __init__(self, gate: DecodeGate) -> None:
        self._gate = gate
        self.reserved = 0

    def reserve(self, nbytes: int, field: str) -> None:
        """Reserve ``nbytes`` for the image in ``field``; :class:`ServerBusyError` when the
        budget has no room for it now."""
        self._gate._reserve(self, nbytes, field)


class DecodeGate:
    """A byte budget of decoded pixels in flight, shared by the threads that decode.

    ``budget`` bytes; 0 lets one request's images decode at a time. ``peak`` (the most bytes ever
    in flight) and ``refused`` (decodes turned away) are for tests and metrics."""

    def __init__(self, budget: int, *, retry_after: int = 1) -> None:
        self.budget = max(0, budget)
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._in_flight = 0
        self.peak = 0
        self.refused = 0

    @property
    def in_flight(self) -> int:
        """Bytes reserved now."""
        return self._in_flight

    @contextmanager
    def hold(self) -> Iterator[DecodeHold]:
        """A hold for one request's images; everything it reserved is given back on exit."""
        hold = DecodeHold(self)
        try:
            yield hold
        finally:
            with self._lock:
                self._in_flight -= hold.reserved
            hold.reserved = 0

    def call(self, work: Callable[[DecodeHold], T]) -> T:
        """``work(hold)`` under a fresh hold, given back when it returns: for a worker thread,
        ``await asyncio.to_thread(gate.call, lambda hold: ...)``, so the hold lasts exactly as
        long as the thread works on the images, even if the request is cancelled meanwhile."""
        with self.hold() as hold:
            return work(hold)

    def _reserve(self, hold: DecodeHold, nbytes: int, field: str) -> None:
        with self._lock:
            alone = self._in_flight == hold.reserved
            if self._in_flight + nbytes > self.budget and not alone:
                self.refused += 1
                raise ServerBusyError(
                    f"{field}: the server is decoding too many images at once; retry shortly",
                    retry_after=self.retry_after,
                    field=field,
                )
            self._in_flight += nbytes
            hold.reserved += nbytes
            self.peak = max(self.peak, self._in_flight)
