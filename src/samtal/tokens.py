"""API tokens: random secrets shown once, kept only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from typing import Final, Literal

TokenKind = Literal["read", "ingest"]
#: A prefix per kind makes a leaked token recognisable (and greppable) for what it is.
PREFIX: Final[dict[str, str]] = {"read": "samtal_r_", "ingest": "samtal_i_"}


def new_secret(kind: TokenKind) -> str:
    """A fresh token of `kind`: 256 random bits, URL-safe."""
    return PREFIX[kind] + secrets.token_urlsafe(32)


def digest(secret: str) -> bytes:
    """What is stored of a token. A fast hash suffices: the secret has 256 bits of entropy."""
    return hashlib.sha256(secret.encode()).digest()
