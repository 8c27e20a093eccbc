"""One stream object being built: the lines of one book and channel of one cut (and hour of
receipt), gzipped as they arrive, so the cut only has to flush (and memory holds compressed
bytes)."""

from __future__ import annotations

import threading
import zlib

#: zlib's window bits for a gzip container (header and trailer), as `gzip.decompress` reads.
GZIP_WBITS = 31
COMPRESSION_LEVEL = 6


class StreamObject:
    """Thread-safe: the socket thread adds streamed lines, a fetching thread backfilled ones."""

    def __init__(self, level: int = COMPRESSION_LEVEL) -> None:
        self._lock = threading.Lock()
        self._zip = zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS)
        self._chunks: list[bytes] = []
        self._data: bytes | None = None
        self.lines = 0
        self.raw_bytes = 0

    def add_encoded(self, data: bytes) -> bool:
        """Append one encoded line (a `bitso_format.stream_line` or `backfill_line`); False
        when the object is finished already."""
        with self._lock:
            if self._data is not None:
                return False
            chunk = self._zip.compress(data)
            if chunk:
                self._chunks.append(chunk)
            self.lines += 1
            self.raw_bytes += len(data)
            return True

    def finish(self) -> bytes:
        """The object's bytes (gzip, NDJSON inside); later calls give the same bytes."""
        with self._lock:
            if self._data is None:
                self._chunks.append(self._zip.flush())
                self._data = b"".join(self._chunks)
                self._chunks = []
            return self._data
