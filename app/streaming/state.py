"""Signed SKU state as stored in the changelog-backed table.

A stored value is ``MAGIC | HMAC-SHA256 | header length | header JSON | snapshot``.
The header names the key it belongs to, the input partition the SKU arrives on and the
last source offset applied per topic-partition (what makes state idempotent under
at-least-once delivery). The MAC covers header and snapshot, so neither the offsets nor
the pickle can be altered or moved to another key without the key's owner noticing: a
value that fails the check is rejected and never unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field

import orjson

MAGIC = b"SRG1"
_MAC_BYTES = 32
_LEN = struct.Struct(">I")
SHARED_KEY_PREFIX = "__shared__:"
PLANNER_KEY_PREFIX = "__planner__:"


class SignatureError(ValueError):
    """A stored value whose signature or framing does not verify."""


def shared_key(partition: int) -> str:
    """Table key of the engine-wide (cold-start models, watermark) snapshot of a partition.

    >>> shared_key(3)
    '__shared__:3'
    """
    return f"{SHARED_KEY_PREFIX}{partition}"


def planner_key(partition: int) -> str:
    """Table key of the first-tier planner's state (fired marks, learned uplifts).

    >>> planner_key(3)
    '__planner__:3'
    """
    return f"{PLANNER_KEY_PREFIX}{partition}"


def applied_key(topic: str, partition: int) -> str:
    """How a topic-partition is named in the applied-offsets map.

    >>> applied_key("shop.cart-adds", 2)
    'shop.cart-adds:2'
    """
    return f"{topic}:{partition}"


@dataclass(slots=True)
class StoredState:
    """One key's state: the engine snapshot plus where it came from in the input."""

    key: str
    partition: int
    snapshot: bytes
    applied: dict[str, int] = field(default_factory=dict)
    saved_at: int = 0


def _mac(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, MAGIC + body, hashlib.sha256).digest()


def sign_state(state: StoredState, secret: bytes) -> bytes:
    """Frame and sign a state for the table.

    >>> blob = sign_state(StoredState("A", 0, b"snap", {"t:0": 41}), b"k")
    >>> verify_state("A", blob, b"k").applied
    {'t:0': 41}
    """
    header = orjson.dumps(
        {
            "key": state.key,
            "partition": state.partition,
            "applied": state.applied,
            "saved_at": state.saved_at,
        }
    )
    body = _LEN.pack(len(header)) + header + state.snapshot
    return MAGIC + _mac(secret, body) + body


def verify_state(key: str, blob: bytes, secret: bytes) -> StoredState:
    """Check a stored value's signature and framing; raise :class:`SignatureError` if bad.

    >>> blob = sign_state(StoredState("A", 0, b"snap"), b"k")
    >>> verify_state("A", blob, b"other-key")
    Traceback (most recent call last):
    ...
    app.streaming.state.SignatureError: signature mismatch
    """
    head = len(MAGIC) + _MAC_BYTES
    if len(blob) < head + _LEN.size or not blob.startswith(MAGIC):
        raise SignatureError("not a signed state")
    mac, body = blob[len(MAGIC) : head], blob[head:]
    if not hmac.compare_digest(mac, _mac(secret, body)):
        raise SignatureError("signature mismatch")
    (header_len,) = _LEN.unpack_from(body)
    header = orjson.loads(body[_LEN.size : _LEN.size + header_len])
    if header.get("key") != key:
        raise SignatureError("state belongs to another key")
    return StoredState(
        key=key,
        partition=int(header["partition"]),
        snapshot=body[_LEN.size + header_len :],
        applied={str(k): int(v) for k, v in header["applied"].items()},
        saved_at=int(header.get("saved_at", 0)),
    )
