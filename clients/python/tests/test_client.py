"""The client against a real host: writes, reads, ranges, metadata, create-only, listing,
signed URLs, the sha256 both ways, and the context in the ledger."""

from __future__ import annotations

import hashlib
import io
import uuid

import pytest
import urllib3

from stowage_client import AlreadyExists, Client, Context, DigestMismatch, NotFound, using

from .conftest import KEY, Host, Proxy


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


def test_bytes_round_trip_with_metadata_content_type_and_sha256(client, host: Host):
    path = unique("t") + "/a.csv"
    data = b"id,value\n1,2\n"
    info = client.put("scratch", path, data, content_type="text/csv", metadata={"cohort": "VACS"})
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.size == len(data)
    assert client.read("scratch", path) == data
    head = client.head("scratch", path)
    assert (head.content_type, head.metadata.get("cohort"), head.size) == ("text/csv", "VACS", len(data))
    assert head.modified is not None


def test_file_objects_and_iterators_stream_through_upload_sessions(client):
    data = bytes(range(256)) * 5000  # 1.28 MB, over several segments
    small = client.with_context()
    small.segment_size = 300_000
    for source in (io.BytesIO(data), (data[i : i + 70_000] for i in range(0, len(data), 70_000))):
        path = unique("t") + "/s.bin"
        info = small.put("default", path, source)
        assert info.sha256 == hashlib.sha256(data).hexdigest()
        with client.get("default", path) as d:
            out = io.BytesIO()
            assert d.copy_to(out) == len(data)
        assert out.getvalue() == data


def test_ranges(client):
    path = unique("t") + "/r.bin"
    data = bytes(range(200))
    client.put("default", path, data)
    assert client.read("default", path, range=(10, 19)) == data[10:20]
    assert client.read("default", path, range=(190, None)) == data[190:]
    assert client.read("default", path, range=(-5, None)) == data[-5:]


def test_create_only_refuses_an_existing_object(client):
    path = unique("t") + "/once.txt"
    client.put("default", path, b"first", create_only=True)
    with pytest.raises(AlreadyExists):
        client.put("default", path, b"second", create_only=True)
    with pytest.raises(AlreadyExists):
        client.put("default", path, io.BytesIO(b"third"), create_only=True)
    assert client.read("default", path) == b"first"


def test_a_wrong_sha256_stores_nothing(client):
    path = unique("t") + "/bad.bin"
    with pytest.raises(DigestMismatch):
        client.put("default", path, b"payload", sha256="0" * 64)
    with pytest.raises(DigestMismatch):
        client.put("default", path, io.BytesIO(b"payload"), sha256="0" * 64)
    assert not client.exists("default", path)


def test_delete_exists_and_not_found(client):
    path = unique("t") + "/gone.txt"
    client.put("default", path, b"x")
    assert client.exists("default", path)
    client.delete("default", path)
    assert not client.exists("default", path)
    with pytest.raises(NotFound):
        client.read("default", path)
    with pytest.raises(NotFound):
        client.delete("default", path)


def test_listing_pages_through_every_object(client):
    prefix = unique("list")
    names = {f"{prefix}/{i:03}.txt" for i in range(7)}
    for n in names:
        client.put("default", n, n.encode())
    got = [i.path for i in client.list("default", prefix + "/", page_size=3)]
    assert sorted(got) == sorted(names)


def test_a_signed_url_is_issued_and_recorded_by_the_host_and_a_tampered_one_is_refused(client, host: Host):
    path = unique("t") + "/shared file.csv"
    client.put("submission", path, b"shared bytes")
    url = client.signed_url("submission", path, expires_in=60)
    http = urllib3.PoolManager()
    r = http.request("GET", url)
    assert (r.status, r.data) == (200, b"shared bytes")
    assert http.request("GET", url.replace("sig=", "sig=0")).status == 403
    # The host issued it: its ledger has the issue under the client's key, then the download.
    issued = [rec for rec in host.ledger(path) if rec["action"] == "url_issued"]
    assert len(issued) == 1 and issued[0]["key"] == "web-1", issued
    assert issued[0]["expires_in_secs"] == 60


def test_download_is_checked_against_the_recorded_sha256(client, host: Host):
    path = unique("t") + "/rot.bin"
    client.put("local", path, b"original bytes")
    # A network that changes bytes on the way (same length, so only the digest can tell).
    proxy = Proxy(host.port, swap=(b"original bytes", b"ORIGINAL BYTES"))
    via = Client(f"http://127.0.0.1:{proxy.port}", KEY, development=True)
    try:
        with pytest.raises(DigestMismatch):
            via.read("local", path)
        # Unchecked, the changed bytes come through: the check above is what caught them.
        assert via.read("local", path, verify=False) == b"ORIGINAL BYTES"
    finally:
        via.close()
        proxy.close()


def test_context_per_client_block_and_call_reaches_the_ledger(host: Host):
    c = host.client(context=Context(actor="client-actor", purpose="qa"))
    p1, p2, p3 = (unique("ctx") + f"/{i}" for i in range(3))
    c.put("scratch", p1, b"1")
    with using(actor="block-actor", cohort="VACS"):
        c.put("scratch", p2, b"2")
        c.put("scratch", p3, b"3", context=Context(actor="call-actor", request_id="req-py-3"))
    c.close()
    # The policy's record (the first of each write) carries the request's fields.
    r1, r2, r3 = (host.ledger(p)[0] for p in (p1, p2, p3))
    assert (r1["actor"], r2["actor"], r3["actor"]) == ("client-actor", "block-actor", "call-actor")
    assert r2["cohort"] == "VACS" and r3["request_id"] == "req-py-3"
    assert r1["key"] == "web-1" and r3["purpose"] == "qa"
