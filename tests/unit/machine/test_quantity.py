"""Kubernetes quantities as apimachinery reads them (vmbmc/machine/quantity.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from vmbmc.machine.quantity import parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4Gi", 4 << 30),
        ("1Ki", 1024),
        ("2Ei", 2 << 60),
        ("1.5Mi", 3 << 19),
        ("500m", Decimal("0.5")),
        ("100n", Decimal("1E-7")),
        ("3u", Decimal("0.000003")),
        ("1k", 1000),
        ("2G", 2 * 10**9),
        ("1E", 10**18),
        ("1e3", 1000),
        ("1E-3", Decimal("0.001")),
        ("12", 12),
        ("+.5", Decimal("0.5")),
        ("-1", -1),
        ("5.", 5),
    ],
)
def test_quantities(text: str, value: int | Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text", ["", "Gi", "4gi", "4 Gi", "1ki", "4GiB", "1e", "0x10", "NaN", "Infinity", "1e3k"]
)
def test_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_numbers_pass_through() -> None:
    assert parse_quantity(2) == 2 and parse_quantity(Decimal("1.5")) == Decimal("1.5")
    with pytest.raises(ValueError):
        parse_quantity(True)  # type: ignore[arg-type]
