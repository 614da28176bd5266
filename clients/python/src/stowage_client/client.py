"""`Client`: the HTTP API of a Stowage host (`stowage serve`) from Python.

    from stowage_client import Client, Context
    client = Client("https://services:8443", os.environ["STOWAGE_API_KEY"], ca_file="ca.pem",
                    context=Context(actor="etl", purpose="conversion"))
    client.put("scratch", "audit_123/data.csv", open("data.csv", "rb"), content_type="text/csv")
    with client.get("scratch", "audit_123/data.csv") as d:
        d.copy_to(open("copy.csv", "wb"))
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterator, Mapping, Optional
from urllib.parse import quote, urlencode

from . import context as _context
from .context import Context
from .errors import StowageError
from .objects import Download, ObjectInfo
from .transport import Retry, Transport, _discard
from .uploads import Source, upload

Range = tuple[int, Optional[int]]


def quote_path(path: str) -> str:
    """Percent-encodes each segment; `.` and `..` segments too, so the host (not a URL
    normaliser on the way) judges them."""
    return "/".join(s.replace(".", "%2E") if s in (".", "..") else quote(s, safe="") for s in path.split("/"))


class Client:
    """A client of one host. Thread-safe: the connections are pooled and reused. `url` must be
        `https://` (verified against `ca_file`, or the system's CAs) unless `development=True`."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        ca_file: Optional[str] = None,
        development: bool = False,
        context: Context = Context(),
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry: Retry = Retry(),
        pool_size: int = 10,
        segment_size: int = 8 << 20,
                resumes: int = 8,
    ) -> None:
        self._transport = Transport(
            url,
            api_key,
            ca_file=ca_file,
            development=development,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry=retry,
            pool_size=pool_size,
        )
        self.context = context
        self.segment_size = segment_size
        self.resumes = resumes
        self.last_resumes = 0

    def __repr__(self) -> str:
        return f"Client({self._transport.base_url!r})"

    def with_context(self, **fields: Optional[str]) -> "Client":
        """A client sharing this one's connections whose calls carry these context fields
        (`actor`, `cohort`, `purpose`, `request_id`)."""
        other = object.__new__(Client)
        other.__dict__.update(self.__dict__)
        other.context = Context(**fields).over(self.context)
        return other

    def close(self) -> None:
        """Closes the pooled connections."""
        self._transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, ctx: Optional[Context]) -> dict[str, str]:
        merged = (ctx or Context()).over(_context.current().over(self.context))
        return merged.headers()

    @staticmethod
    def _target(route: str, name: str, path: str) -> str:
        return f"{route}/{quote(name, safe='')}/{quote_path(path)}"

    @staticmethod
    def _write_headers(
        content_type: Optional[str], metadata: Optional[Mapping[str, str]], create_only: bool, sha256: Optional[str]
    ) -> dict[str, str]:
        h = {f"x-stowage-meta-{k}": v for k, v in (metadata or {}).items()}
        h["content-type"] = content_type or "application/octet-stream"
        if create_only:
            h["if-none-match"] = "*"
        if sha256:
            h["x-stowage-sha256"] = sha256
        return h

    def put(
        self,
        name: str,
        path: str,
        data: Source,
        *,
        content_type: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        create_only: bool = False,
        sha256: Optional[str] = None,
        context: Optional[Context] = None,
    ) -> ObjectInfo:
        """Stores `data` at `name:path` (a storage class or disk, and a path) and returns its
        info. `data` is bytes, a binary file object or an iterable of bytes; anything but bytes
        is streamed through a resumable upload session (see `upload`). The sha256 is computed
        here and checked by the host before the atomic commit (`DigestMismatch`: nothing
        stored). `create_only` sends `If-None-Match: *` (`AlreadyExists` if it is there)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            return self.upload(
                name,
                path,
                data,
                content_type=content_type,
                metadata=metadata,
                create_only=create_only,
                sha256=sha256,
                context=context,
            )
        body = bytes(data)
        digest = hashlib.sha256(body).hexdigest()
        headers = self._headers(context)
        headers.update(self._write_headers(content_type, metadata, create_only, sha256 or digest))
        headers["content-length"] = str(len(body))
        answer = self._transport.request(
            "PUT", self._target("/v1/objects", name, path), headers=headers, body=body, rewind=lambda: body
        )
        try:
            return ObjectInfo.from_json(json.loads(answer.read()))
        finally:
            _discard(answer)

    def upload(
        self,
        name: str,
        path: str,
        source: Source,
        *,
        content_type: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        create_only: bool = False,
        sha256: Optional[str] = None,
        context: Optional[Context] = None,
    ) -> ObjectInfo:
        """Stores `source` through a resumable upload session, `segment_size` bytes at a time
        (the memory it needs): a connection that breaks is resumed from the offset the host
        holds, up to `resumes` times; the sha256 computed on the way is checked by the host
        before the commit. Nothing is visible before the commit; on failure the session is
        discarded. `last_resumes` says how often the last upload resumed."""
        call = self._headers(context)
        open_headers = dict(call)
        open_headers.update(self._write_headers(content_type, metadata, create_only, sha256))
        info, self.last_resumes = upload(
            self._transport,
            self._target("/v1/uploads", name, path),
            open_headers,
            call,
            source,
            segment_size=self.segment_size,
            resumes=self.resumes,
            sha256=sha256,
        )
        return info

    def get(
        self,
        name: str,
        path: str,
        *,
        range: Optional[Range] = None,
        verify: bool = True,
        context: Optional[Context] = None,
    ) -> Download:
        """The object's bytes, streamed (read them from the returned `Download`). `range` is
        `(first, last)` inclusive, `(first, None)` to the end, or `(-n, None)` for the last n
        bytes. A whole object is checked against its sha256 as it is read (`verify`)."""
        headers = self._headers(context)
        if range is not None:
            first, last = range
            spec = f"{first}" if first < 0 else f"{first}-{'' if last is None else last}"
            headers["range"] = f"bytes={spec}"
        answer = self._transport.request("GET", self._target("/v1/objects", name, path), headers=headers)
        length = answer.headers.get("content-length")
        info = ObjectInfo.from_headers(path, answer.headers, int(length) if length else None)
        return Download(answer, info, verify=verify and range is None and answer.status == 200)

    def read(self, name: str, path: str, **kw: object) -> bytes:
        """The whole object (or range) as bytes: for small objects; `get` streams."""
        with self.get(name, path, **kw) as d:  # type: ignore[arg-type]
            return d.read()

    def head(self, name: str, path: str, *, context: Optional[Context] = None) -> ObjectInfo:
        """The object's info (`NotFound` if there is none)."""
        answer = self._transport.request("HEAD", self._target("/v1/objects", name, path), headers=self._headers(context))
        _discard(answer)
        return ObjectInfo.from_headers(path, answer.headers)

    def exists(self, name: str, path: str, *, context: Optional[Context] = None) -> bool:
        """Whether there is an object at `name:path`."""
        try:
            self.head(name, path, context=context)
            return True
        except StowageError as e:
            if e.kind == "not-found":
                return False
            raise

    def delete(self, name: str, path: str, *, context: Optional[Context] = None) -> None:
        """Removes the object (`NotFound` if there is none)."""
        answer = self._transport.request(
            "DELETE", self._target("/v1/objects", name, path), headers=self._headers(context)
        )
        _discard(answer)

    def list(
        self, name: str, prefix: str = "", *, page_size: int = 1000, context: Optional[Context] = None
    ) -> Iterator[ObjectInfo]:
        """Every object whose path starts with `prefix`, page by page."""
        cursor: Optional[str] = None
        while True:
            query = {"prefix": prefix, "limit": str(page_size)}
            if cursor:
                query["cursor"] = cursor
            target = f"/v1/list/{quote(name, safe='')}?{urlencode(query)}"
            answer = self._transport.request("GET", target, headers=self._headers(context))
            try:
                page = json.loads(answer.read())
            finally:
                _discard(answer)
            for item in page.get("items", []):
                yield ObjectInfo.from_json(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def signed_url(
        self, name: str, path: str, expires_in: int = 3600, *, context: Optional[Context] = None
    ) -> str:
        """A download URL for `name:path` that needs no key and expires after `expires_in`
        seconds, issued by the host (`POST /v1/urls/...`): the disk driver's presigned URL, or
        one the host signs. The host records the issue under this client's key, and every
        download through it; no secret of the host's is needed here."""
        target = self._target("/v1/urls", name, path) + "?" + urlencode({"expires_in_secs": int(expires_in)})
        answer = self._transport.request("POST", target, headers=self._headers(context))
        try:
            issued = json.loads(answer.read())
        finally:
            _discard(answer)
        return str(issued["url"])


__all__ = ["Client", "Range", "quote_path"]
