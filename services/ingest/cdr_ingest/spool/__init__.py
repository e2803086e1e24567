"""The ingest spool: where accepted envelopes wait, fsync'd on local disk, while the bus is away.

Delivery contract:

* ``Spool.append`` returns only once the record is on disk (``write`` + ``fsync`` of the segment,
  and of the directory when the segment is new), so a post answered 200 from the spool survives a
  crash, a SIGKILL or a power cut. Concurrent appends share one fsync (group commit): while one
  fsync runs, the next appends queue up and the following fsync covers them all.
* The spool is bounded (``max_bytes``): past it ``append`` raises ``SpoolFull`` (503), so the
  switch keeps the CDR and retries rather than ingest taking what it cannot keep.
* The ``Drainer`` ships records to the bus in spool order, in batches, and a segment file is
  deleted only after every record in it was acknowledged by the bus. A crash after a batch was
  acknowledged but before the spool noted it sends that batch again on restart, and a post whose
  bus send timed out may still land on Kafka later although it was spooled too: both are
  duplicates of the same envelope (same id, same call id), which the parser stores once. The
  spool gives at-least-once delivery, never at-most-once.

Modules: ``codec`` (one framed, CRC-checked record: the on-disk format), ``segment_log`` (the
``Spool``: segment files, group commit, fsync, recovery, acknowledgement), ``drainer`` (the
``Drainer``: spool → bus, in order, with backoff).
"""

from cdr_ingest.spool.drainer import Drainer
from cdr_ingest.spool.segment_log import Spool, SpoolFull, SpoolStatus, SpoolUnavailable

__all__ = ["Drainer", "Spool", "SpoolFull", "SpoolStatus", "SpoolUnavailable"]
