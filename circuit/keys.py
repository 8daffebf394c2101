"""Client keys as the store keeps them: made here, stored only as a hash and a short prefix."""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
from collections.abc import Iterable, Sequence

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


def config_key_names(secrets: Sequence[str]) -> list[str]:
    """The names of the keys in CIRCUIT_API_KEYS, in their order: config-1, config-2, …"""
    return [f"config-{number}" for number in range(1, len(secrets) + 1)]


def free_name(base: str, taken: Iterable[str]) -> str:
    """`base`, or the first of `base-2`, `base-3`, … that no key has (names are never reused)."""
    taken = set(taken)
    if base not in taken:
        return base
    return next(name for number in itertools.count(2)
                if (name := f"{base}-{number}") not in taken)


def new_secret() -> str:
    """A fresh client key: 256 bits of randomness behind a recognisable prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """How a key is stored: keys are random, so a plain SHA-256 cannot be brute-forced."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(secret: str) -> str:
    """The part of a key safe to show, enough to tell keys apart; never more than half of it
    (a key of CIRCUIT_API_KEYS can be as short as 8 characters)."""
    return secret[: min(len(KEY_PREFIX) + 4, len(secret) // 2)]


def create_key(store: Store, name: str, *, daily_limit_usd: float | None = None,
               rpm: int | None = None, tpm: int | None = None) -> str:
    """Store a new key named `name` and return its secret, which is never stored."""
    check_key_name(name)
    secret = new_secret()
    store.add_key(KeyRow(name=name, key_hash=hash_secret(secret),
                         key_prefix=display_prefix(secret), daily_limit_usd=daily_limit_usd,
                         rpm=rpm, tpm=tpm))
    return secret

