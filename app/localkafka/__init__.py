"""A local single-node Apache Kafka (KRaft) for development and tests, run from Maven jars.

>>> from app.localkafka import LocalKafka, LocalKafkaError
"""

from app.localkafka.broker import KafkaStatus, LocalKafka
from app.localkafka.errors import LocalKafkaError

__all__ = ["KafkaStatus", "LocalKafka", "LocalKafkaError"]
