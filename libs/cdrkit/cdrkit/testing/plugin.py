"""pytest plugin: cdrflow's real-infrastructure fixtures (loaded by ``-p cdrkit.testing.plugin``).

- ``pg_url``: a fresh PostgreSQL database on 127.0.0.1:5432 for the test session, dropped after.
- ``tansu`` / ``kafka_url``: a Tansu Kafka-protocol broker on a free loopback port.
- ``moto_s3`` / ``s3_store_url``: a moto S3 server on a free loopback port; a fresh bucket per test.
"""

from cdrkit.testing.postgres import fresh_pg_url, pg_url
from cdrkit.testing.s3 import moto_s3, s3_store_url
from cdrkit.testing.tansu import fresh_tansu, kafka_url, tansu

__all__ = [
    "fresh_pg_url",
    "fresh_tansu",
    "kafka_url",
    "moto_s3",
    "pg_url",
    "s3_store_url",
    "tansu",
]
