"""Local disk sink: temp file then hard link, so a name appears whole and is never overwritten."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

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
        if path.exists():
            return False
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            # link() fails when the name exists, which rename() would silently overwrite.
            os.link(temp, path)
        except FileExistsError:
            return False
        except OSError as error:
            raise StorageError(f"cannot write {path}: {error.strerror or error}") from error
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()
        return True
