"""cdrflow's data contract: the CDR model, the raw envelope, topic names and error types."""

from cdrmodel import errors, topics
from cdrmodel.envelope import DeadLetter, Origin, PayloadKind, RawEnvelope, sha256_hex
from cdrmodel.record import CDR, SCHEMA_VERSION, Direction, Disposition, Leg

__all__ = [
    "CDR",
    "SCHEMA_VERSION",
    "DeadLetter",
    "Direction",
    "Disposition",
    "Leg",
    "Origin",
    "PayloadKind",
    "RawEnvelope",
    "errors",
    "sha256_hex",
    "topics",
]
