"""Ask a broker for its metadata over a raw socket: the proof that it really answers.

A blocking probe in the Kafka wire protocol needs no event loop, so it works from plain
functions, from the CLI and from inside code that already runs an asyncio loop.
"""

from __future__ import annotations

import socket
import struct

API_VERSIONS = 18
METADATA = 3
METADATA_VERSION = 1  # the oldest Metadata version Kafka 4 still serves with a broker list
CLIENT_ID = b"surge-localkafka-probe"


class ProbeError(OSError):
    """The broker did not give a usable answer (yet)."""


def _request(api_key: int, api_version: int, correlation_id: int, body: bytes) -> bytes:
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(CLIENT_ID))
    payload = header + CLIENT_ID + body
    return struct.pack(">i", len(payload)) + payload


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ProbeError("connection closed by the broker")
        chunks += chunk
    return bytes(chunks)


def _exchange(sock: socket.socket, request: bytes, correlation_id: int) -> bytes:
    sock.sendall(request)
    (size,) = struct.unpack(">i", _read_exactly(sock, 4))
    response = _read_exactly(sock, size)
    (answered_id,) = struct.unpack_from(">i", response, 0)
    if answered_id != correlation_id:
        raise ProbeError(f"correlation id {answered_id} does not match {correlation_id}")
    return response[4:]


def metadata_version_range(api_versions_body: bytes) -> tuple[int, int] | None:
    """The (min, max) Metadata versions listed in an ApiVersions v0 response body.

    >>> produce, metadata = struct.pack(">hhh", 0, 3, 11), struct.pack(">hhh", 3, 0, 13)
    >>> body = struct.pack(">hi", 0, 2) + produce + metadata
    >>> metadata_version_range(body)
    (0, 13)
    """
    error_code, count = struct.unpack_from(">hi", api_versions_body, 0)
    if error_code != 0:
        raise ProbeError(f"ApiVersions answered with error code {error_code}")
    for index in range(count):
        key, low, high = struct.unpack_from(">hhh", api_versions_body, 6 + 6 * index)
        if key == METADATA:
            return low, high
    return None


def broker_count(metadata_v1_body: bytes) -> int:
    """Number of brokers in a Metadata v1 response body (the brokers array comes first).

    >>> broker_count(struct.pack(">i", 1) + b"...")
    1
    """
    (count,) = struct.unpack_from(">i", metadata_v1_body, 0)
    return int(count)


def probe_metadata(host: str, port: int, timeout: float = 2.0) -> int:
    """Connect, negotiate with ApiVersions and return how many brokers Metadata lists.

    Raises :class:`OSError` (a :class:`ProbeError` or a socket error) when the broker
    does not answer properly.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        body = _exchange(sock, _request(API_VERSIONS, 0, 1, b""), 1)
        versions = metadata_version_range(body)
        if versions is None or not versions[0] <= METADATA_VERSION <= versions[1]:
            raise ProbeError(f"broker does not serve Metadata v{METADATA_VERSION}: {versions}")
        no_topics = struct.pack(">i", 0)
        body = _exchange(sock, _request(METADATA, METADATA_VERSION, 2, no_topics), 2)
        return broker_count(body)
