"""The recording index: one row per call whose CDR names a recording, with its archive state.

``state``: ``pending`` (indexed, on the local root), ``uploading`` (the archiver began an upload;
``upload_id`` is the multipart upload to resume), ``verified`` (the S3 object matches the local
file: size, sha256 metadata, ETag), ``local_removed`` (only the S3 copy is left), ``refused``
(the CDR's path leaves the local root; ``error`` says why; never served, never archived).
"""

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

from cdrkit.db import UtcDateTime

metadata = MetaData()

PENDING = "pending"
UPLOADING = "uploading"
VERIFIED = "verified"
LOCAL_REMOVED = "local_removed"
REFUSED = "refused"
STATES = (PENDING, UPLOADING, VERIFIED, LOCAL_REMOVED, REFUSED)

recordings = Table(
    "recordings",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("recording_path", Text, nullable=False),  # as the CDR gave it (the switch's path)
    Column("relative_path", Text),  # under the local root; null when refused
    Column("tenant", String(255)),
    Column("start_time", UtcDateTime, nullable=False),
    Column("format", String(16), nullable=False),
    Column("size_bytes", BigInteger),
    Column("state", String(16), nullable=False),
    Column("s3_key", Text),
    Column("upload_id", Text),
    Column("sha256", String(64)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    Column("indexed_at", UtcDateTime, nullable=False),
    Column("archived_at", UtcDateTime),
    Index("ix_recordings_state_start_time", "state", "start_time"),
)
