from prometheus_client import Counter

INDEXED = Counter(
    "cdrflow_recordings_indexed_total",
    "Consumed CDRs by outcome in the recording index.",
    ["outcome"],  # indexed | duplicate | refused | no_recording | invalid
)
REFUSED = Counter(
    "cdrflow_recordings_refused_total",
    "Recording paths refused because they leave the local root, by where it was noticed.",
    ["where"],  # index | serve
)
SERVED = Counter(
    "cdrflow_recordings_served_total",
    "Audio answers by tier and kind.",
    ["location", "kind"],  # local | s3 ; full | partial | head | redirect | unsatisfiable
)
SERVED_BYTES = Counter(
    "cdrflow_recordings_served_bytes_total",
    "Audio bytes streamed, by tier.",
    ["location"],
)
FALLBACKS = Counter(
    "cdrflow_recordings_fallbacks_total",
    "Recordings found only on the tier the age rule did not name.",
    ["found_on"],  # local | s3
)
ARCHIVE_FILES = Counter(
    "cdrflow_recordings_archive_files_total",
    "Recordings handled by the archiver, by outcome.",
    ["outcome"],  # uploaded | already_in_s3 | failed
)
ARCHIVE_BYTES = Counter(
    "cdrflow_recordings_archive_bytes_total",
    "Bytes the archiver uploaded to S3.",
)
LOCAL_REMOVED = Counter(
    "cdrflow_recordings_local_removed_total",
    "Local copies removed after their S3 copy was verified.",
)
ARCHIVE_RUNS = Counter(
    "cdrflow_recordings_archive_runs_total",
    "Archiver runs by outcome.",
    ["outcome"],  # ok | failed
)
