"""The rolling-restart stall the bench reports: the longest time without a completion over a window."""

from __future__ import annotations

from services.tools.bench.replicas import longest_gap


def test_a_stall_inside_the_window_is_its_longest_gap() -> None:
    times = [0.0, 0.5, 1.0, 1.2, 3.7, 4.0, 4.5]
    assert longest_gap(times, 1.0, 4.0) == (2.5, 4)


def test_a_stall_across_the_window_start_counts_from_the_completion_before_it() -> None:
    gap, inside = longest_gap([0.0, 5.0, 5.1], 2.0, 6.0)
    assert (gap, inside) == (5.0, 2)


def test_no_completion_at_all_is_a_stall_as_long_as_the_window() -> None:
    assert longest_gap([], 1.0, 3.0) == (2.0, 0)
