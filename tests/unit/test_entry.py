"""``sdrest``'s entry point starts an engine worker first only for a command line that serves."""

from __future__ import annotations

import pytest

from sdrest import entry


@pytest.mark.parametrize(
    ("argv", "serves"),
    [
        ([], True),
        (["serve"], True),
        (["serve", "--port", "8081"], True),
        (["--models-dir", "m"], True),  # flags only: the stable-diffusion.cpp-rest way
        (["serve", "--help"], False),
        (["--help"], False),
        (["-h"], False),
        (["--version"], False),
        (["generate", "a cat"], False),
        (["worker"], False),
        (["users", "list"], False),
        (["models"], False),
    ],
)
def test_only_a_command_line_that_serves_starts_a_worker_first(
    argv: list[str], serves: bool
) -> None:
    assert entry.serves(argv) is serves


def test_no_worker_is_started_for_other_commands() -> None:
    assert entry.early_worker(["models", "--json"]) is None
