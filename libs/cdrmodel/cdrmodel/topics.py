"""Topic names of the contract (ARCHITECTURE §3)."""

from typing import Final

RAW: Final = "cdr.raw"
NORMALIZED: Final = "cdr.normalized"
DLQ: Final = "cdr.dlq"
RATED: Final = "cdr.rated"

ALL: Final = (RAW, NORMALIZED, DLQ, RATED)
