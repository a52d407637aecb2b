"""The product of stage-S rewards."""

from __future__ import annotations

import numpy as np
import pytest

from rewards.combine import ProductScore


def test_product_skips_rewards_that_cannot_score_a_row():
    a = lambda prompts, tokens: np.array([0.5, np.nan, np.nan, 0.2])   # noqa: E731
    b = lambda prompts, tokens: np.array([0.4, 0.9, np.nan, 1.0])      # noqa: E731
    s = ProductScore([a, b])(["p"] * 4, np.zeros((4, 3), np.int32))
    np.testing.assert_allclose(s[[0, 1, 3]], [0.2, 0.9, 0.2], rtol=1e-6)
    assert np.isnan(s[2]) and s.dtype == np.float32
    with pytest.raises(ValueError, match="at least one"):
        ProductScore([])
