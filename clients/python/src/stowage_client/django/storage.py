"""`StowageStorage`: a Django storage whose files live on a Stowage host, under one storage
class (`submission`, `scratch`, ...) of it."""

from __future__ import annotations

import io
import logging
import mimetypes
import os
import uuid
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator, Optional

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.utils import timezone
from django.utils.deconstruct import deconstructible

from .. import context as _context
from ..client import Client
from ..context import Context
from ..errors import AlreadyExists, NotFound, StowageError
from ..paths import scratch_path, submission_path

log = logging.getLogger(__name__)


class StowageFile(File):  # type: ignore[type-arg]
    """A file on the host, opened lazily: nothing is fetched until the first read, and then the
    bytes stream (checked against the object's sha256 at the end). It keeps the context it was
    opened in (the request's actor), so a response streaming it later still reads as them."""

    def __init__(self, storage: "StowageStorage", name: str, ctx: Context) -> None:
        self._storage = storage
        self._ctx = ctx
        self._stream: Optional[io.BufferedReader] = None
        self._path = name
        self.name = name
        self.mode = "rb"

    @property
    def file(self) -> io.BufferedReader:
        if self._stream is None:
            download = self._storage.client.get(self._storage.storage_class, self._path, context=self._ctx)
            self._size = download.info.size
            self._stream = io.BufferedReader(download, buffer_size=1 << 20)
        return self._stream

    @file.setter
    def file(self, value: Any) -> None:
        self._stream = value

    @property
    def size(self) -> int:
        if not hasattr(self, "_size"):
            self._size = self._storage.client.head(self._storage.storage_class, self._path, context=self._ctx).size
        return self._size

    @property
    def closed(self) -> bool:
        return self._stream is None or self._stream.closed

    def open(self, mode: Optional[str] = None, *args: Any, **kwargs: Any) -> "StowageFile":
        if mode not in (None, "rb", "r"):
            raise ValueError(f"Stowage files open for reading only, not {mode!r}")
        self.close()
        return self

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


@deconstructible(path="stowage_client.django.StowageStorage")
class StowageStorage(Storage):
    """Files on a Stowage host's storage class `storage_class`. Options (all also settable as
    keyword arguments): `url` (or `$STOWAGE_URL`); the API key from the environment variable
    `api_key_env` (default `STOWAGE_API_KEY`); `ca_file` for TLS; `development=True` to allow
    plain HTTP; `url_expires`, the seconds a URL from `url()` stays valid (the host issues and
    records it); `actor`, `purpose` for every call of this storage;
    `connect_timeout`, `read_timeout`."""

    def __init__(
        self,
        url: Optional[str] = None,
        storage_class: str = "default",
        api_key_env: str = "STOWAGE_API_KEY",
        ca_file: Optional[str] = None,
        development: bool = False,
        url_expires: int = 3600,
        actor: Optional[str] = None,
        purpose: Optional[str] = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.host_url = url or os.environ.get("STOWAGE_URL")
        self.storage_class = storage_class
        self.api_key_env = api_key_env
        self.ca_file = ca_file
        self.development = development
        self.url_expires = url_expires
        self.context = Context(actor=actor, purpose=purpose)
        self.timeouts = (connect_timeout, read_timeout)
        self._client: Optional[Client] = None

    def __repr__(self) -> str:
        return f"StowageStorage({self.host_url!r}, storage_class={self.storage_class!r})"

    @property
    def client(self) -> Client:
        """The client, made at first use (so settings and the environment are read then)."""
        if self._client is None:
            if not self.host_url:
                raise ImproperlyConfigured("StowageStorage needs a url (OPTIONS or $STOWAGE_URL)")
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ImproperlyConfigured(f"StowageStorage: the environment variable {self.api_key_env} is not set")
            self._client = Client(
                self.host_url,
                key,
                ca_file=self.ca_file,
                development=self.development,
                context=self.context,
                connect_timeout=self.timeouts[0],
                read_timeout=self.timeouts[1],
            )
        return self._client

    def as_actor(self, actor: str, purpose: Optional[str] = None) -> "StowageStorage":
        """This storage, sharing its connections, with every call made for `actor`."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.context = Context(actor=actor, purpose=purpose).over(self.context)
        other._client = self.client.with_context(actor=actor, purpose=purpose)
        return other

    # The Storage API.

    def _save(self, name: str, content: Any) -> str:
        content_type = getattr(content, "content_type", None) or mimetypes.guess_type(name)[0]
        small = content.size is not None and content.size <= self.client.segment_size
        for _ in range(3):
            if hasattr(content, "seek"):
                content.seek(0)
            data = content.read() if small else content.chunks()
            if isinstance(data, str):
                data = data.encode()
            try:
                self.client.put(self.storage_class, name, data, content_type=content_type, create_only=True)
                return name
            except AlreadyExists:
                # Taken since get_available_name looked: pick another name, as Django would.
                name = self.get_available_name(name)
        raise AlreadyExists(f"{name}: every name tried was taken")

    def _open(self, name: str, mode: str = "rb") -> StowageFile:
        if mode not in ("rb", "r"):
            raise ValueError(f"Stowage files open for reading only, not {mode!r}")
        return StowageFile(self, name, _context.current().over(self.context))

    def delete(self, name: str) -> None:
        try:
            self.client.delete(self.storage_class, name)
        except NotFound:
            pass

    def exists(self, name: str) -> bool:
        return self.client.exists(self.storage_class, name)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        dirs: set[str] = set()
        files: list[str] = []
        for info in self.client.list(self.storage_class, prefix):
            rest = info.path[len(prefix) :]
            if "/" in rest:
                dirs.add(rest.split("/", 1)[0])
            else:
                files.append(rest)
        return sorted(dirs), files

    def size(self, name: str) -> int:
        return self.client.head(self.storage_class, name).size

    def url(self, name: Optional[str]) -> str:
        """A download URL that needs no key and expires after `url_expires` seconds, issued
        (and recorded) by the host."""
        if name is None:
            raise ValueError("no file name")
        return self.client.signed_url(self.storage_class, name, self.url_expires)

    def get_modified_time(self, name: str) -> datetime:
        modified = self.client.head(self.storage_class, name).modified
        if modified is None:
            raise NotImplementedError(f"the disk behind {self.storage_class!r} keeps no modification time")
        return modified if settings.USE_TZ else timezone.make_naive(modified)

    # The original application's helpers.

    submission_path = staticmethod(submission_path)
    scratch_path = staticmethod(scratch_path)

    @contextmanager
    def temp_file(self, name: str = "tmp", audit_id: Any = None, content: Any = None) -> Iterator[str]:
        """A fresh path for a temporary object (under `scratch/audit_ID/` with an `audit_id`,
        else `scratch/tmp/`), saved with `content` if given; the object is deleted when the
        block ends, however it ends. A failed delete raises only if the block did not."""
        unique = f"{uuid.uuid4().hex[:12]}-{name}"
        path = scratch_path(audit_id, unique) if audit_id is not None else f"scratch/tmp/{unique}"
        failed = False
        try:
            if content is not None:
                path = self.save(path, content)
            yield path
        except BaseException:
            failed = True
            raise
        finally:
            try:
                self.delete(path)
            except StowageError:
                if not failed:
                    raise
                log.warning("could not delete temporary file %s after an error", path, exc_info=True)


def get_submission_storage() -> Storage:
    """`STORAGES["submission"]` (the original's `StorageManager.get_submission_storage()`)."""
    return storages["submission"]


def get_scratch_storage() -> Storage:
    """`STORAGES["scratch"]` (the original's `StorageManager.get_scratch_storage()`)."""
    return storages["scratch"]


@contextmanager
def temp_file(name: str = "tmp", audit_id: Any = None, content: Any = None, alias: str = "scratch") -> Iterator[str]:
    """`STORAGES[alias].temp_file(...)`: the original's `temp_file_context()`."""
    storage = storages[alias]
    if not isinstance(storage, StowageStorage):
        raise ImproperlyConfigured(f'STORAGES["{alias}"] is not a StowageStorage')
    with storage.temp_file(name, audit_id=audit_id, content=content) as path:
        yield path
