"""Tiny backbones built once per session (see helpers.py)."""

from __future__ import annotations

import pytest

from tests.musicrl.lm.helpers import build


@pytest.fixture(scope="session")
def tiny_transformer():
    """The tiny transformer (GQA: 4 query heads, 2 kv heads)."""
    return build("transformer")


@pytest.fixture(scope="session")
def tiny_griffin():
    """The tiny Griffin: (recurrent, recurrent, local attention), window 8, GQA 4/2."""
    return build("griffin")


@pytest.fixture(params=["transformer", "griffin"])
def tiny_backbone(request):
    """Each tiny backbone in turn."""
    return request.getfixturevalue(f"tiny_{request.param}")
