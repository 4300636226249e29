"""Where the tests read DMTF's Redfish CSDL: the copy in tests/data/redfish-csdl, or $REDFISH_CSDL."""

from __future__ import annotations

import os
from pathlib import Path

CSDL = Path(os.environ.get("REDFISH_CSDL") or Path(__file__).parent / "data" / "redfish-csdl")
