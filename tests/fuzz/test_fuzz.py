"""Quick fuzz profile for ``make test``; ``python -m fuzz`` runs the long budget.

Every property runs :data:`EXAMPLES` hypothesis examples (``TOKENGUARD_FUZZ_EXAMPLES``).
The linear-work checks count Python-level calls (deterministic), not seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fuzz.harness import (
    COUNTS,
    EXAMPLES,
    FAMILIES,
    Harness,
    build_properties,
    python_calls,
    run_family,
)

#: Sizes for the linear-work checks; the validator's limit is raised above them so
#: the parser really walks the input instead of stopping at the size check.
SMALL = 20_000
LARGE = 10 * SMALL


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness(max_token_bytes=4 * LARGE)
    yield h
    h.close()


@pytest.fixture(scope="module")
def properties(harness: Harness) -> dict[str, Callable[[], None]]:
    return build_properties(harness, EXAMPLES)


@pytest.mark.parametrize(
    "name",
    [
        "parse_text",
        "parse_segments",
        "json_differential",
        "validate_text",
        "mutated_token",
        "header",
        "framed_token",
    ],
)
def test_property(properties: dict[str, Callable[[], None]], name: str) -> None:
    before = COUNTS[name]
    properties[name]()
    assert COUNTS[name] - before >= min(EXAMPLES, 50), "hypothesis ran too few examples"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_work_grows_at_most_linearly(harness: Harness, family: str) -> None:
    small = run_family(harness, family, SMALL)
    large = run_family(harness, family, LARGE)
    small(), large()  # warm caches (header memo, regexes) before counting
    calls_small = python_calls(small)
    calls_large = python_calls(large)
    # Ten times the input may cost at most ten times the calls plus a constant: no
    # per-character Python loops that nest, no re-scanning per element.
    assert calls_large <= 10 * calls_small + 200, (calls_small, calls_large)


def test_rejections_of_huge_inputs_are_constant_work(harness: Harness) -> None:
    """Past the size limit, the work does not depend on the size at all."""
    default = Harness()
    try:
        sizes = [64 * 1024, 640 * 1024, 6400 * 1024]
        calls = [python_calls(lambda n=n: default._validate("a" * n)) for n in sizes]  # type: ignore[misc]
        assert max(calls) - min(calls) <= 5, calls
    finally:
        default.close()
