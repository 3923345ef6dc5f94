"""The decode gate: reservations from image headers, refusals past the budget, nothing leaked."""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

from sdrest.decode_gate import DecodeGate, DecodeHold, decode_cost
from sdrest.errors import ServerBusyError
from sdrest.images import open_image_bytes

MiB = 1 << 20


def png(mode: str, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("mode", "per_pixel"), [("L", 1), ("P", 1), ("1", 1), ("I;16", 2), ("RGB", 4), ("RGBA", 4)]
)
def test_cost_is_the_decoded_pixels_plus_a_working_copy(mode: str, per_pixel: int) -> None:
    with Image.open(io.BytesIO(png(mode, (30, 20)))) as image:
        assert decode_cost(image) == 30 * 20 * (per_pixel + 4)


def test_reservations_past_the_budget_are_refused_with_retry_after() -> None:
    gate = DecodeGate(3 * MiB)
    with gate.hold() as first, gate.hold() as second:
        first.reserve(2 * MiB, "a")
        with pytest.raises(ServerBusyError) as refused:
            second.reserve(2 * MiB, "b")
        assert (refused.value.status, refused.value.code) == (429, "server_busy")
        assert refused.value.retry_after == 1 and refused.value.field == "b"
        second.reserve(1 * MiB, "c")  # what still fits is granted
        assert gate.in_flight == 3 * MiB
    assert gate.in_flight == 0 and gate.peak == 3 * MiB and gate.refused == 1


def test_a_request_alone_may_pass_the_budget_so_it_is_never_refused_forever() -> None:
    gate = DecodeGate(1 * MiB)
    with gate.hold() as only:
        only.reserve(2 * MiB, "a")
        only.reserve(2 * MiB, "b")  # still alone
        with gate.hold() as other, pytest.raises(ServerBusyError):
            other.reserve(1, "c")
    assert gate.in_flight == 0


def test_an_error_inside_the_hold_gives_everything_back() -> None:
    gate = DecodeGate(MiB)

    def work(hold: DecodeHold) -> None:
        hold.reserve(MiB, "a")
        raise ValueError("boom")

    with pytest.raises(ValueError), gate.hold() as hold:
        work(hold)
    with pytest.raises(ValueError):
        gate.call(work)
    assert gate.in_flight == 0


def test_open_image_bytes_reserves_before_loading_and_closes_on_refusal() -> None:
    gate = DecodeGate(0)
    data = png("RGB", (100, 50))
    with gate.hold() as hold:
        image = open_image_bytes(data, "image", max_pixels=1 << 20, hold=hold)
        assert hold.reserved == 100 * 50 * 8 and image.size == (100, 50)
        with gate.hold() as other, pytest.raises(ServerBusyError):
            open_image_bytes(data, "image", max_pixels=1 << 20, hold=other)
    assert gate.in_flight == 0


def test_threads_never_hold_more_than_the_budget() -> None:
    gate = DecodeGate(10 * MiB)
    start = threading.Barrier(16)
    granted: list[int] = []

    def one() -> None:
        start.wait()
        for _ in range(200):
            with gate.hold() as hold:
                try:
                    hold.reserve(3 * MiB, "x")
                except ServerBusyError:
                    continue
                granted.append(gate.in_flight)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gate.peak <= 9 * MiB and max(granted) <= 9 * MiB
    assert gate.in_flight == 0
