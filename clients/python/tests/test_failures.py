"""What goes wrong, as a caller sees it: typed errors that never show a key, bounded retries
that honour `Retry-After`, a connection cut mid-upload resumed, and TLS."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from pathlib import Path

import pytest
import urllib3

from stowage_client import Client, Denied, InvalidPath, Retry, TlsError, Unavailable

from .conftest import KEY, KEY2, Host, Proxy


def test_a_wrong_key_is_denied_and_no_key_shows_anywhere(host: Host):
    wrong = "wrong-key-" + "z" * 40
    c = Client(host.url, wrong, development=True)
    with pytest.raises(Denied) as e:
        c.head("default", "anything.txt")
    assert e.value.status == 401
    for text in (str(e.value), repr(e.value), repr(c), repr(c._transport)):
        assert wrong not in text and KEY not in text
    right = host.client()
    assert KEY not in repr(right) and KEY not in repr(right._transport)


def test_a_host_that_is_down_is_unavailable_after_the_bounded_retries():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    c = Client(f"http://127.0.0.1:{port}", KEY, development=True, retry=Retry(attempts=3, backoff=0.2))
    started = time.monotonic()
    with pytest.raises(Unavailable) as e:
        c.put("default", "a.txt", b"x")
    elapsed = time.monotonic() - started
    assert "connection refused" in str(e.value) and "after 3 tries" in str(e.value)
    # Two waits of 0.2 and 0.4 s, each with jitter down to half: it did wait, and not forever.
    assert 0.3 <= elapsed < 5, elapsed


def test_an_invalid_path_is_refused_naming_the_problem(client):
    with pytest.raises(InvalidPath) as e:
        client.put("default", "a/../b.txt", b"x")
    assert "`..`" in e.value.message and e.value.status == 400
    with pytest.raises(InvalidPath) as e:
        client.put("default", "a//b.txt", b"x")
    assert "empty" in e.value.message


def test_a_503_is_retried_after_its_retry_after(tmp_path: Path):
    # One upload session in all: while another key holds it, opening one answers 503.
    h = Host(tmp_path, limits="[server.limits]\nmax_uploads = 1\nmax_uploads_per_key = 1")
    try:
        other = urllib3.PoolManager()
        auth = {"authorization": f"Bearer {KEY2}"}
        r = other.request("POST", f"{h.url}/v1/uploads/default/held.bin", headers=auth)
        assert r.status == 201
        held = r.headers["location"]
        quick = h.client(retry=Retry(attempts=2, backoff=0.01))
        with pytest.raises(Unavailable) as e:
            quick.upload("default", "late.bin", b"abc")
        assert e.value.status == 503
        threading.Timer(1.5, lambda: other.request("DELETE", h.url + held, headers=auth)).start()
        patient = h.client(retry=Retry(attempts=6, backoff=0.01))
        started = time.monotonic()
        info = patient.upload("default", "late.bin", b"abc")
        # The backoff alone would have given up after ~0.3 s: the host's Retry-After set the pace.
        assert info.size == 3 and time.monotonic() - started >= 1.0
    finally:
        h.stop()


def test_a_connection_cut_mid_upload_resumes_and_the_sha256_matches(host: Host):
    size, block = 40 << 20, bytes(range(256)) * 4096  # 40 MiB in 1 MiB blocks
    blocks = [bytes([i]) + block[1:] for i in range(size // len(block))]
    digest = hashlib.sha256()
    for b in blocks:
        digest.update(b)
    expected = digest.hexdigest()
    proxy = Proxy(host.port, cut_after=20 << 20)  # mid-way through the third 8 MiB segment
    c = Client(f"http://127.0.0.1:{proxy.port}", KEY, development=True)
    try:
        info = c.upload("default", "resumed/big.bin", iter(blocks))
    finally:
        c.close()
        proxy.close()
    assert proxy.cuts == 1 and c.last_resumes >= 1
    assert (info.size, info.sha256) == (size, expected)
    got = hashlib.sha256()
    with host.client().get("default", "resumed/big.bin") as d:
        for chunk in d.iter_chunks():
            got.update(chunk)
    assert got.hexdigest() == expected


def test_tls_with_a_ca_file_and_no_plain_http_unless_development(tls_host: Host):
    assert tls_host.url.startswith("https://")
    c = tls_host.client(ca_file=str(tls_host.dir / "ca.pem"))
    c.put("default", "tls/a.txt", b"over TLS")
    assert c.read("default", "tls/a.txt") == b"over TLS"
    with pytest.raises(TlsError) as e:
        Client(tls_host.url, KEY).head("default", "tls/a.txt")  # the system CAs do not know it
    assert "certificate" in str(e.value).lower()
    with pytest.raises(ValueError, match="development=True"):
        Client(tls_host.url.replace("https", "http"), KEY)
