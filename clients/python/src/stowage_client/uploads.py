"""Resumable uploads through the host's upload sessions: open (`POST /v1/uploads/...`), append
segment by segment (`PATCH` with `upload-offset`), and commit (`POST .../complete` with the
sha256 computed on the way). A connection that breaks mid-segment is followed by a `HEAD` of
the session and the rest of the segment from the offset the host holds; only one segment is
ever in memory. On any failure the session is discarded, so nothing half-written lingers."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator, Mapping, Optional, Union

from .errors import IoError, StowageError, Unavailable
from .objects import ObjectInfo
from .transport import Transport, _discard

Source = Union[bytes, bytearray, memoryview, Iterable[bytes], Any]


def segments(source: Source, size: int) -> Iterator[memoryview]:
    """The source's bytes in segments of `size` (the last one shorter): a bytes-like value, a
    binary file object (anything with `read`), or an iterable of bytes. Each segment is a view
    of one buffer reused for the next (no allocation per segment, so the heap does not grow),
    valid until the next one is asked for."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        for i in range(0, len(view), size):
            yield view[i : i + size]
        return
    buf = memoryview(bytearray(size))
    readinto = getattr(source, "readinto", None)
    read = getattr(source, "read", None)
    if readinto is not None or read is not None:
        while True:
            got = 0
            while got < size:
                if readinto is not None:
                    n = readinto(buf[got:]) or 0
                else:
                    part = read(size - got)  # type: ignore[misc]
                    n = len(part)
                    buf[got : got + n] = part
                if n == 0:
                    break
                got += n
            if got:
                yield buf[:got]
            if got < size:
                return
    got = 0
    for chunk in source:
        view = memoryview(chunk).cast("B")
        while len(view):
            n = min(len(view), size - got)
            buf[got : got + n] = view[:n]
            got += n
            view = view[n:]
            if got == size:
                yield buf
                got = 0
    if got:
        yield buf[:got]


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

    def append(self, segment: memoryview) -> None:
        """Appends `segment` at the session's offset, resuming after a broken connection."""
        start, end = self.offset, self.offset + len(segment)
        while self.offset < end:
            pos = self.offset - start
            body = segment[pos:]
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
        # Each segment is hashed on a second thread while it is sent (hashlib lets go of the
        # GIL), and both finish before the buffer is reused for the next one.
        with ThreadPoolExecutor(1, thread_name_prefix="stowage-sha256") as hasher:
            for segment in segments(source, segment_size):
                hashed = hasher.submit(digest.update, segment)
                try:
                    session.append(segment)
                finally:
                    hashed.result()
        return session.complete(sha256 or digest.hexdigest()), session.resumed
    except BaseException:
        session.discard()
        raise
