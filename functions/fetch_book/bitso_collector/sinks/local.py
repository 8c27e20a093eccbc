"""Local disk sink: temp file then hard link, so a name appears whole and is never overwritten."""

from __future__ import annotations

from pathlib import Path

from bitso_format import write_new_file

from ..errors import StorageError


class LocalSink:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def location(self, key: str) -> str:
        return str(self.root / key)

    def create(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/json",
        content_encoding: str | None = None,
        deadline: float | None = None,
    ) -> bool:
        path = self.root / key
        try:
            return write_new_file(path, data)
        except OSError as error:
            raise StorageError(f"cannot write {path}: {error.strerror or error}") from error
