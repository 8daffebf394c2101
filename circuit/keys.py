"""Client keys as the store keeps them: made here, stored only as a hash and a short prefix."""

from __future__ import annotations

import hashlib
import re
import secrets

from circuit.store.base import Store
from circuit.store.records import KeyRow

KEY_PREFIX = "sk-circuit-"
#: A key's daily limit that exempts it from the default one (NULL means "the default applies").
NO_DAILY_LIMIT = -1.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class InvalidKeyName(ValueError):
    """A key name the store must not take; the message says why."""


def check_key_name(name: str) -> str:
    """`name` if it can name a key: 1-64 of letters, digits, '.', '_', '-', and not `config-N`
    (those name the keys from CIRCUIT_API_KEYS, whose usage it would merge with)."""
    if not _NAME.fullmatch(name):
        raise InvalidKeyName(f"invalid key name {name!r}: use 1-64 letters, digits, '.', '_' "
                             "or '-', starting with a letter or digit")
    if name.startswith("config-"):
        raise InvalidKeyName(f"invalid key name {name!r}: names `config-N` belong to the keys "
                             "in CIRCUIT_API_KEYS")
    return name


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
    check_key_name(name)
    secret = new_secret()
    store.add_key(KeyRow(name=name, key_hash=hash_secret(secret),
                         key_prefix=display_prefix(secret), daily_limit_usd=daily_limit_usd,
                         rpm=rpm, tpm=tpm))
    return secret


def has_active_keys(store: Store) -> bool:
    return any(row.revoked_at is None for row in store.load_keys())
