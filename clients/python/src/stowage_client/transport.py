"""One pool of connections to the host, the API key, timeouts and the retry rule: a `503` or
a refused connection is tried again (after `Retry-After` or an exponential backoff), nothing
else is. Every failure leaves here as a `StowageError`."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Union

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.response import BaseHTTPResponse

from .errors import StowageError, Unavailable, from_answer

Body = Union[bytes, memoryview, Iterable[bytes], None]


class TlsError(StowageError):
    """The TLS handshake failed (most often: the host's certificate does not verify against the
    CA file). Not retried."""

    kind = "tls"


@dataclass(frozen=True)
class Retry:
    """How often and how long to try again after a `503` or a refused connection: at most
    `attempts` tries in all, waiting `backoff * 2**n` seconds (with jitter, at most `max_wait`),
    or the host's `Retry-After` when it says more (also at most `max_wait`)."""

    attempts: int = 4
    backoff: float = 0.2
    max_wait: float = 30.0

    def wait(self, attempt: int, retry_after: Optional[str]) -> float:
        """How long to wait before try number `attempt + 1`."""
        wait = self.backoff * (2.0**attempt) * (0.5 + random.random() / 2)
        if retry_after and retry_after.strip().isdigit():
            wait = max(wait, float(retry_after.strip()))
        return min(wait, self.max_wait)


class Transport:
    """The connection pool to one host, with its key. The key is only ever a header value:
    no message or `repr` shows it."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        ca_file: Optional[str] = None,
        development: bool = False,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry: Retry = Retry(),
        pool_size: int = 10,
    ) -> None:
        parsed = urllib3.util.parse_url(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if parsed.scheme == "http" and not development:
            raise ValueError(
                "plain HTTP sends the key and the data in the clear: use https://, or pass "
                "development=True on a development machine"
            )
        if not api_key:
            raise ValueError("no API key (the host refuses every /v1 request without one)")
        kw: dict[str, object] = {
            "maxsize": pool_size,
            "block": False,
            "retries": False,
            "timeout": urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            # Large writes: hand the socket 1 MiB at a time, not http.client's 16 KiB.
            "blocksize": 1 << 20,
        }
        if parsed.scheme == "https":
            kw.update(cert_reqs="CERT_REQUIRED", ca_certs=ca_file)
        self.base_url = f"{parsed.scheme}://{parsed.netloc}{(parsed.path or '').rstrip('/')}"
        self._prefix = (parsed.path or "").rstrip("/")
        self._where = f"{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
        self._pool = urllib3.connection_from_url(url, **kw)
        self._auth = f"Bearer {api_key}"
        self.retry = retry

    def __repr__(self) -> str:
        return f"Transport({self.base_url!r})"

    def close(self) -> None:
        """Closes the pooled connections."""
        self._pool.close()

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str],
        body: Body = None,
        rewind: Optional[Callable[[], Body]] = None,
        accept: tuple[int, ...] = (),
        auth: bool = True,
    ) -> BaseHTTPResponse:
        """Sends one request (retried as the class says) and returns the answer, its body not yet
        read. A status >= 400 not in `accept` raises its typed error. `rewind` gives the body
        again for a retry after a `503`; without it a `503` is retried only if no body was sent."""
        all_headers = dict(headers)
        if auth:
            all_headers["authorization"] = self._auth
        attempt = 0
        while True:
            try:
                answer = self._pool.urlopen(
                    method,
                    self._prefix + target,
                    # urllib3 sends any buffer (a memoryview too) as one chunk; its types say bytes.
                    body=body,  # type: ignore[arg-type]
                    headers=all_headers,
                    retries=False,
                    redirect=False,
                    preload_content=False,
                    decode_content=False,
                    chunked=body is not None
                    and not isinstance(body, (bytes, bytearray))
                    and "content-length" not in all_headers,
                )
            except (NewConnectionError, ConnectTimeoutError) as e:
                # Nothing reached the host: safe to try again whatever the body was.
                refused = "refused" in str(e).lower()
                what = "connection refused" if refused else "could not connect"
                if attempt + 1 < self.retry.attempts:
                    time.sleep(self.retry.wait(attempt, None))
                    attempt += 1
                    continue
                raise Unavailable(f"{what} by {self._where} after {attempt + 1} tries") from None
            except SSLError as e:
                raise TlsError(f"TLS with {self._where} failed: {_reason(e)}") from None
            except (ProtocolError, ReadTimeoutError) as e:
                raise Unavailable(f"the connection to {self._where} broke: {_reason(e)}") from None
            except HTTPError as e:
                raise Unavailable(f"request to {self._where} failed: {_reason(e)}") from None
            if answer.status == 503 and attempt + 1 < self.retry.attempts and (body is None or rewind):
                retry_after = answer.headers.get("retry-after")
                _discard(answer)
                time.sleep(self.retry.wait(attempt, retry_after))
                attempt += 1
                if rewind is not None:
                    body = rewind()
                continue
            if answer.status >= 400 and answer.status not in accept:
                raise failure(answer)
            return answer


def failure(answer: BaseHTTPResponse) -> StowageError:
    """The typed error of a failed answer (its body, at most 64 KiB, is read and released)."""
    try:
        data = answer.read(64 * 1024) if answer.status != 204 else b""
    except HTTPError:
        data = b""
    _discard(answer)
    return from_answer(answer.status, data, answer.headers.get("x-stowage-error"), answer.headers.get("x-request-id"))


def _discard(answer: BaseHTTPResponse) -> None:
    """Drops the rest of an answer and gives its connection back (or closes it)."""
    try:
        answer.drain_conn()
    except HTTPError:
        pass
    answer.release_conn()


def _reason(e: BaseException) -> str:
    """A short reason for a transport error: its innermost cause, never the request."""
    inner: BaseException = e
    while True:
        nxt = getattr(inner, "reason", None) or inner.__context__
        if not isinstance(nxt, BaseException) or nxt is inner:
            break
        inner = nxt
    text = str(inner) or type(inner).__name__
    return text if len(text) < 200 else text[:200] + "..."
