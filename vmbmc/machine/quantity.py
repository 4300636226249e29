"""Kubernetes resource quantities ("4Gi", "500m", "1e3", "1.5G") as exact numbers.

Our own few lines rather than `kubernetes.utils.quantity`: importing that module imports the whole
`kubernetes` client (and requests, urllib3, oauthlib), which the kbmc must not load (docs/kbmc.md, "Memory").
The grammar is apimachinery's (pkg/api/resource/quantity.go):

    quantity ::= signedNumber suffix
    suffix   ::= Ki | Mi | Gi | Ti | Pi | Ei  |  n | u | m | "" | k | M | G | T | P | E  |  (e|E) signedNumber
"""

from __future__ import annotations

import re
from decimal import Decimal

_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:([KMGTPE]i|[numkMGTPE])|[eE]([+-]?\d+))?")
_BINARY = {p: 1024 ** (i + 1) for i, p in enumerate("KMGTPE")}
_DECIMAL_EXPONENT = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: str | int | float | Decimal) -> Decimal:
    """The quantity's value; ValueError when it does not follow the grammar."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float | Decimal):
        return Decimal(value)
    match = _QUANTITY.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix, exponent = match.groups()
    amount = Decimal(number)
    if exponent is not None:
        return amount.scaleb(int(exponent))
    if suffix is None:
        return amount
    if suffix.endswith("i"):
        return amount * _BINARY[suffix[0]]
    return amount.scaleb(_DECIMAL_EXPONENT[suffix])
