"""vmbmc's own resource.Quantity parser (the runtime does not depend on the `kubernetes` package)
agrees with the official client's, which the tests still install."""

from __future__ import annotations

from decimal import Decimal

import pytest
from kubernetes.utils.quantity import parse_quantity as official

from vmbmc.machine.inventory import parse_quantity

VALUES = ["4Gi", "500m", "1e3", "1E-3", "2", "0.5", ".5", "1.5Ki", "100M", "3E", "12n", "7u", "-1k", "+2Ti"]


@pytest.mark.parametrize("value", VALUES)
def test_same_number_as_the_kubernetes_client(value: str) -> None:
    assert parse_quantity(value) == Decimal(official(value))


@pytest.mark.parametrize("value", ["bogus", "1Q", "5ki", "", "1.2.3", "Gi"])
def test_malformed_is_none_where_the_client_raises(value: str) -> None:
    with pytest.raises(ValueError):
        official(value)
    assert parse_quantity(value) is None
