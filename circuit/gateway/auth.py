"""Client keys: who is calling, checked against an in-memory ring that follows the keys table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from circuit.errors import AuthenticationFailed
from circuit.keys import config_key_names, hash_secret
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
        #: Revoked key hashes -> their names, so a refused request is recorded under its key.
        self._revoked: dict[str, str] = {}

    def load(self, config_keys: Sequence[str], rows: Iterable[KeyRow]) -> None:
        active = {hash_secret(secret): ClientKey(name)
                  for name, secret in zip(config_key_names(config_keys), config_keys,
                                          strict=True)}
        revoked = {}
        for row in rows:
            if row.revoked_at:
                revoked[row.key_hash] = row.name
            else:
                active[row.key_hash] = ClientKey(row.name, row.daily_limit_usd, row.rpm, row.tpm)
        self._active = active
        self._revoked = {digest: name for digest, name in revoked.items() if digest not in active}

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
        # Looked up by the SHA-256 of the secret, never by the secret: how long the dictionary
        # takes to find (or miss) a digest says nothing an attacker can use to guess the
        # secret byte by byte, so no constant-time comparison is needed (nor would one of a
        # digest with itself mean anything).
        digest = hash_secret(secret)
        key = self._active.get(digest)
        if key is not None:
            return key
        if digest in self._revoked:
            raise AuthenticationFailed("This API key has been revoked", code="revoked_api_key",
                                       key_name=self._revoked[digest])
        raise AuthenticationFailed("Incorrect API key provided")
