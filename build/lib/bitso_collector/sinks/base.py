"""The one interface every sink keeps."""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    def create(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/json",
        content_encoding: str | None = None,
        deadline: float | None = None,
    ) -> bool:
        """Store `data` under `key` only if nothing is there yet.

        Returns True when written, False when the name already existed (a duplicate, never an
        overwrite). Raises `StorageError` when it could not be stored (by `deadline`, epoch s).
        """

    def location(self, key: str) -> str:
        """Where `key` lives, for people: a path or a `gs://` URL."""
