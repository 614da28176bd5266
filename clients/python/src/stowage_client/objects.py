"""What the host says of an object (`ObjectInfo`), and a download being read (`Download`): a
binary file object whose bytes are checked against the object's sha256 as they stream."""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional

from urllib3.exceptions import HTTPError
from urllib3.response import BaseHTTPResponse

from .errors import DigestMismatch, Unavailable

META_PREFIX = "x-stowage-meta-"


@dataclass(frozen=True)
class ObjectInfo:
    """An object's info: its path, size, sha256, content type, when it was written, its etag,
    its user metadata, and the fallback disk holding it while its own disk is away."""

    path: str
    size: int
    sha256: Optional[str] = None
    content_type: Optional[str] = None
    modified_ms: Optional[int] = None
    etag: Optional[str] = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    fallback: Optional[str] = None

    @property
    def modified(self) -> Optional[_dt.datetime]:
        """When it was last written (UTC), if the disk knows."""
        if self.modified_ms is None:
            return None
        return _dt.datetime.fromtimestamp(self.modified_ms / 1000, tz=_dt.timezone.utc)

    @classmethod
    def from_json(cls, j: Mapping[str, Any]) -> "ObjectInfo":
        """From the API's object-info JSON (a write's answer, a listing's item)."""
        return cls(
            path=str(j["path"]),
            size=int(j["size"]),
            sha256=j.get("sha256"),
            content_type=j.get("content_type"),
            modified_ms=j.get("modified_ms"),
            etag=j.get("etag"),
            metadata=dict(j.get("metadata") or {}),
            fallback=j.get("fallback"),
        )

    @classmethod
    def from_headers(cls, path: str, h: Mapping[str, str], size: Optional[int] = None) -> "ObjectInfo":
        """From a GET or HEAD answer's headers."""
        modified = h.get("x-stowage-modified-ms")
        length = size if size is not None else int(h.get("content-length") or 0)
        return cls(
            path=path,
            size=length,
            sha256=h.get("x-stowage-sha256"),
            content_type=h.get("content-type"),
            modified_ms=int(modified) if modified and modified.isdigit() else None,
            etag=h.get("etag"),
            metadata={k[len(META_PREFIX) :]: v for k, v in h.items() if k.lower().startswith(META_PREFIX)},
            fallback=h.get("x-stowage-fallback"),
        )


class Download(io.RawIOBase):
    """An object's bytes as they arrive: `read`, `readinto`, `iter_chunks`, or `copy_to` a file.
    A whole-object download is checked against the host's sha256 when the last byte is read
    (`DigestMismatch` if it differs); a broken connection is `Unavailable`. Close it (or use it
    as a context manager) to give the connection back early."""

    def __init__(self, answer: BaseHTTPResponse, info: ObjectInfo, *, verify: bool) -> None:
        super().__init__()
        self.info = info
        self._answer = answer
        self._expect = info.sha256 if verify else None
        self._hash = hashlib.sha256() if self._expect else None
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        n = len(data)
        memoryview(buffer).cast("B")[:n] = data
        return n

    def read(self, size: int = -1) -> bytes:
        if self._done:
            return b""
        try:
            data = self._answer.read(None if size is None or size < 0 else size)
        except HTTPError as e:
            self.close()
            raise Unavailable(f"the download of {self.info.path} broke: {type(e).__name__}") from None
        if self._hash is not None:
            self._hash.update(data)
        if not data or size is None or size < 0:
            self._finish()
        return data

    def iter_chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The bytes in chunks of at most `chunk_size`."""
        while True:
            chunk = self.read(chunk_size)
            if not chunk:
                return
            yield chunk

    def copy_to(self, dest: Any, chunk_size: int = 1 << 20) -> int:
        """Writes every byte to the binary file object `dest`; returns how many."""
        n = 0
        for chunk in self.iter_chunks(chunk_size):
            dest.write(chunk)
            n += len(chunk)
        return n

    def _finish(self) -> None:
        self._done = True
        got = self._hash.hexdigest() if self._hash is not None else None
        # The connection goes back to the pool; the file stays open (reads give b"") until
        # closed, as a buffered reader on top expects.
        self._answer.release_conn()
        if got is not None and got != self._expect:
            raise DigestMismatch(
                f"{self.info.path}: the bytes read have sha256 {got}, the host recorded {self._expect}"
            )

    def close(self) -> None:
        if not self.closed and not self._done:
            self._done = True
            self._answer.close()
        super().close()
