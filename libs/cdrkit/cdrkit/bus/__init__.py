"""The message bus: one interface, in-process and Kafka backends (see ``base`` for the contract)."""

from cdrkit.bus.base import (
    Bus,
    BusConfig,
    BusError,
    CommitFailed,
    Consumer,
    Delivery,
    Message,
    Producer,
    Record,
    RevokeCallback,
    TopicPartition,
)


def open_bus(url: str, *, sasl_password: str | None = None) -> Bus:
    """Build (not start) the bus for ``url``; ``sasl_password`` (CDRFLOW_BUS_SASL_PASSWORD) is
    used by a ``kafka://`` URL with SASL and no ``sasl_password_file``."""
    config = BusConfig.parse(url)
    if config.scheme == "memory":
        from cdrkit.bus.memory import MemoryBus

        return MemoryBus(url, config)
    from cdrkit.bus.kafka import KafkaBus

    return KafkaBus(url, config, sasl_password=sasl_password)


__all__ = [
    "Bus",
    "BusConfig",
    "BusError",
    "CommitFailed",
    "Consumer",
    "Delivery",
    "Message",
    "Producer",
    "Record",
    "RevokeCallback",
    "TopicPartition",
    "open_bus",
]
