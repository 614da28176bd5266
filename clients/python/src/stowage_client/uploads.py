"""Resumable uploads through the host's upload sessions: open (`POST /v1/uploads/...`), append
segment by segment (`PATCH` with `upload-offset`), and commit (`POST .../complete` with the
sha256 computed on the way). A connection that breaks mid-segment is followed by a `HEAD` of
the session and the rest of the segment from the offset the host holds; only one segment is
ever in memory. On any failure the session is discarded, so nothing half-written lingers."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Iterable, Iterator, Mapping, Optional, Union

from .errors import IoError, StowageError, Unavailable
from .objects import ObjectInfo
from .transport import Transport, _discard

Source = Union[bytes, bytearray, memoryview, Iterable[bytes], Any]


def segments(source: Source, size: int) -> Iterator[bytes]:
    """The source's bytes in segments of `size` (the last one shorter): a bytes-like value, a
    binary file object (anything with `read`), or an iterable of bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        for i in range(0, len(view), size):
            yield bytes(view[i : i + size])
        return
    read = getattr(source, "read", None)
    if read is not None:
        while True:
            parts, got = [], 0
            while got < size:
                part = read(size - got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
            if not parts:
                return
            yield parts[0] if len(parts) == 1 else b"".join(parts)
            if got < size:
                return
    # Chunks are kept by reference and joined once a segment is full: one copy per segment.
    parts: list[bytes] = []
    held = 0
    for chunk in source:
        parts.append(chunk)
        held += len(chunk)
        while held >= size:
            joined = b"".join(parts)
            parts, held = [joined[size:]], held - size
            yield joined[:size] if len(joined) > size else joined
            del joined
    if held:
        yield b"".join(parts)


class Session:
    """One upload session on the host, at `location` (`/v1/upload-sessions/ID`)."""

    def __init__(self, transport: Transport, location: str, headers: Mapping[str, str], resumes: int) -> None:
        self.transport = transport
        self.location = location
        self.headers = dict(headers)
        self.resumes_left = resumes
        self.resumed = 0
        self.offset = 0

    def head_offset(self) -> int:
        """The offset the host holds."""
        answer = self.transport.request("HEAD", self.location, headers=self.headers)
        _discard(answer)
        return int(answer.headers.get("upload-offset", "0"))

    def append(self, segment: bytes) -> None:
        """Appends `segment` at the session's offset, resuming after a broken connection."""
        start, end = self.offset, self.offset + len(segment)
        while self.offset < end:
            pos = self.offset - start
            body = segment if pos == 0 else segment[pos:]
            headers = dict(self.headers)
            headers["upload-offset"] = str(self.offset)
            headers["content-length"] = str(len(body))
            headers["content-type"] = "application/offset+octet-stream"
            try:
                answer = self.transport.request(
                    "PATCH", self.location, headers=headers, body=body, rewind=lambda: body, accept=(409,)
                )
                _discard(answer)
                held = int(answer.headers.get("upload-offset", "-1"))
            except Unavailable:
                if self.resumes_left <= 0:
                    raise
                self.resumes_left -= 1
                self.resumed += 1
                time.sleep(self.transport.retry.wait(0, None))
                held = self.head_offset()
            if not start <= held <= end:
                raise IoError(f"the host holds {held} bytes of the upload, outside this segment ({start}..{end})")
            self.offset = held

    def complete(self, sha256: str) -> ObjectInfo:
        """Commits the upload (the host checks `sha256` first)."""
        headers = dict(self.headers)
        headers["x-stowage-sha256"] = sha256
        answer = self.transport.request("POST", self.location + "/complete", headers=headers)
        try:
            return ObjectInfo.from_json(json.loads(answer.read()))
        finally:
            _discard(answer)

    def discard(self) -> None:
        """Discards the session; a failure to (the host gone) is left to the host's idle reaper."""
        try:
            _discard(self.transport.request("DELETE", self.location, headers=self.headers))
        except StowageError:
            pass


def upload(
    transport: Transport,
    target: str,
    open_headers: Mapping[str, str],
    call_headers: Mapping[str, str],
    source: Source,
    *,
    segment_size: int,
    resumes: int,
    sha256: Optional[str] = None,
) -> tuple[ObjectInfo, int]:
    """Uploads `source` through a session opened at `target` (`/v1/uploads/NAME/PATH`); returns
    the object's info and how many times it resumed. A `sha256` the caller gave (also sent when
    the session opened) is the one the host checks; else the one computed on the way."""
    answer = transport.request("POST", target, headers=open_headers)
    location = answer.headers.get("location")
    _discard(answer)
    if not location:
        raise IoError("the host opened an upload session without a Location")
    session = Session(transport, location, call_headers, resumes)
    digest = hashlib.sha256()
    try:
        for segment in segments(source, segment_size):
            digest.update(segment)
            session.append(segment)
        return session.complete(sha256 or digest.hexdigest()), session.resumed
    except BaseException:
        session.discard()
        raise
