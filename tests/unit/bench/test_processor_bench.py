"""bench/processor.py on a few thousand records: every event handled, the parts add up."""

from __future__ import annotations

import pytest

from bench import processor


def test_the_processor_benchmark_handles_every_record_and_splits_its_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    figures = processor.run(3_000, skus=2_000)
    assert figures["events"] == 3_000
    # four partitions x three topics at most, plus a batch per 1,000 records of a pair
    assert 3 <= figures["batches"] <= 12 + 3
    split = figures["us_per_event"]
    assert split["core"] > 0 and split["decode"] > 0
    assert split["core"] + split["decode"] + split["rest"] == pytest.approx(split["all"], abs=0.05)
    # a free core can only be faster than the processor with its core
    assert figures["eps_with_a_free_core"] > figures["processor_eps"]
    assert figures["forecast_records"] >= 0
    out = capsys.readouterr().out
    assert "with a core that cost nothing" in out
