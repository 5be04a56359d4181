"""bench/expiry.py runs both ways on a small catalogue and they forget the same SKUs."""

from __future__ import annotations

import pytest

from bench import expiry


def test_the_expiry_benchmark_forgets_every_sku_both_ways(
    capsys: pytest.CaptureFixture[str],
) -> None:
    figures = expiry.run(3_000)
    # 3,000 SKUs at 750 a call (close budget 3,000 / EXPIRY_COST 4): four budgeted calls
    assert figures["budgeted_calls"] == 4
    assert figures["records"] == 3_000  # one idle-stretch record per SKU, both ways
    assert "budgeted" in capsys.readouterr().out
