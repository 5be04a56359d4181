"""The scale benchmark's bound: how far keyed partitions let two workers share a workload."""

import pytest

from bench.scale import best_split


def test_a_hot_partition_caps_what_a_second_worker_can_take() -> None:
    # The day-long workload's four partitions (first 300,000 events): one SKU holds 16.6 %
    # of the events, its partition 41 %; two partitions per worker leave one with 60 %.
    assert best_split([188, 190, 208, 414]) == 0.602
    assert 1 / best_split([188, 190, 208, 414]) == pytest.approx(1.66, abs=0.01)


def test_even_partitions_split_evenly_and_partitions_are_never_shared() -> None:
    assert best_split([25, 25, 25, 25]) == 0.5
    assert best_split([10, 10, 10]) == 0.667  # two of three partitions on one worker
    assert best_split([97, 1, 1, 1]) == 0.98  # a partition goes to one worker whole
    assert best_split([0, 0]) == 1.0  # nothing to split
