"""``paused_gc``: the collector off while a large batch is built, untouched for a small one,
and always left as it was found."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qmcp_agents.domain.batching import PAUSE_GC_FROM, paused_gc


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


COUNTS = st.one_of(st.none(), st.integers(min_value=0, max_value=10 * PAUSE_GC_FROM))


@given(count=COUNTS, enabled=st.booleans())
def test_the_collector_is_paused_for_a_large_batch_only_and_left_as_found(
    count: int | None, enabled: bool
) -> None:
    (gc.enable if enabled else gc.disable)()
    with paused_gc(count):
        paused = not gc.isenabled()
    assert paused is ((count is None or count >= PAUSE_GC_FROM) or not enabled)
    assert gc.isenabled() is enabled


@pytest.mark.parametrize("count", [None, PAUSE_GC_FROM, 1])
def test_a_failure_inside_leaves_the_collector_as_found(count: int | None) -> None:
    gc.enable()
    with pytest.raises(RuntimeError, match="inside"), paused_gc(count):
        raise RuntimeError("inside")
    assert gc.isenabled()
