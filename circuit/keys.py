"""Client keys as the store keeps them: made here, stored only as a hash and a short prefix."""

from __future__ import annotations

import hashlib
import secrets

from circuit.store.base import Store
from circuit.store.records import KeyRow

KEY_PREFIX = "sk-circuit-"


def new_secret() -> str:
    """A fresh client key: 256 bits of randomness behind a recognisable prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """How a key is stored: keys are random, so a plain SHA-256 cannot be brute-forced."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(secret: str) -> str:
    """The part of a key safe to show, enough to tell keys apart."""
    return secret[: len(KEY_PREFIX) + 4]


def create_key(store: Store, name: str, *, daily_limit_usd: float | None = None,
               rpm: int | None = None, tpm: int | None = None) -> str:
    """Store a new key named `name` and return its secret, which is never stored."""
    secret = new_secret()
    store.add_key(KeyRow(name=name, key_hash=hash_secret(secret),
                         key_prefix=display_prefix(secret), daily_limit_usd=daily_limit_usd,
                         rpm=rpm, tpm=tpm))
    return secret


def has_active_keys(store: Store) -> bool:
    return any(row.revoked_at is None for row in store.load_keys())
