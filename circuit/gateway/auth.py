"""Client keys: who is calling, checked against an in-memory ring that follows the keys table."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from circuit.errors import AuthenticationFailed
from circuit.keys import hash_secret
from circuit.store.records import KeyRow


@dataclass(frozen=True, slots=True)
class ClientKey:
    """An authenticated caller and its limits (None: the configured default applies)."""

    name: str
    daily_limit_usd: float | None = None
    rpm: int | None = None
    tpm: int | None = None


class KeyRing:
    """Maps key hashes to callers. Replaced whole on change, so readers never see half a load."""

    def __init__(self) -> None:
        self._active: dict[str, ClientKey] = {}
        self._revoked: frozenset[str] = frozenset()

    def load(self, config_keys: Iterable[str], rows: Iterable[KeyRow]) -> None:
        active = {hash_secret(secret): ClientKey(f"config-{i}")
                  for i, secret in enumerate(config_keys, 1)}
        revoked = set()
        for row in rows:
            if row.revoked_at:
                revoked.add(row.key_hash)
            else:
                active[row.key_hash] = ClientKey(row.name, row.daily_limit_usd, row.rpm, row.tpm)
        self._active, self._revoked = active, frozenset(revoked - active.keys())

    def __len__(self) -> int:
        return len(self._active)

    def authenticate(self, authorization: str | None) -> ClientKey:
        """The caller named by an `Authorization: Bearer` header, or AuthenticationFailed."""
        if not authorization:
            raise AuthenticationFailed(
                "Missing API key: send it as 'Authorization: Bearer <key>'")
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer <key>'")
        digest = hash_secret(secret)
        # Looked up by hash, so lookup time says nothing about the secret; compared in
        # constant time all the same.
        key = self._active.get(digest)
        if key is not None and hmac.compare_digest(digest, hash_secret(secret)):
            return key
        if digest in self._revoked:
            raise AuthenticationFailed("This API key has been revoked", code="revoked_api_key")
        raise AuthenticationFailed("Incorrect API key provided")
