"""Credential providers: explicit keys, COSFS passwd file, environment, CVM instance role.

Secrets live only in `Credentials` objects, whose repr hides them; no message built here
contains a SecretKey or token.
"""

from __future__ import annotations

from typing import Protocol

from cosfs.cos.auth import Credentials


class CredentialProvider(Protocol):
    async def get(self) -> Credentials:
        """Current credentials, refreshed first when they are close to expiry."""
        ...

    async def refresh(self) -> Credentials:
        """Fresh credentials now (after the server said the token expired)."""
        ...


class StaticCredentials:
    """Keys that never change: explicit, passwd file or environment."""

    def __init__(self, creds: Credentials) -> None:
        self._creds = creds

    async def get(self) -> Credentials:
        return self._creds

    async def refresh(self) -> Credentials:
        return self._creds
