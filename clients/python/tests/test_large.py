"""1 GiB up and down through the client, streamed from a generator and hashed on the way
back, in a separate Python process whose peak RSS must stay under 100 MiB."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from .conftest import KEY, Host

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys, time
    from stowage_client import Client

    def peak_rss_kib():
        # VmHWM: this process's own peak (getrusage's ru_maxrss keeps the parent's across exec).
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    url, key = sys.argv[1], sys.argv[2]
    block = bytes(range(256)) * 4096  # 1 MiB
    sent = hashlib.sha256()

    def blocks():
        for i in range(1024):
            b = i.to_bytes(4, "big") + block[4:]
            sent.update(b)
            yield b

    c = Client(url, key, development=True)
    t0 = time.monotonic()
    info = c.put("default", "large/1gib.bin", blocks())
    t1 = time.monotonic()
    rss_up = peak_rss_kib()
    got, n = hashlib.sha256(), 0
    with c.get("default", "large/1gib.bin") as d:
        for chunk in d.iter_chunks():
            got.update(chunk)
            n += len(chunk)
    t2 = time.monotonic()
    c.delete("default", "large/1gib.bin")
    print(json.dumps({
        "size": info.size, "stored_sha256": info.sha256, "sent_sha256": sent.hexdigest(),
        "read": n, "read_sha256": got.hexdigest(), "up_secs": t1 - t0, "peak_rss_after_upload_kib": rss_up, "down_secs": t2 - t1,
        "peak_rss_kib": peak_rss_kib(),
    }))
    """
)


def test_one_gib_up_and_down_with_peak_rss_under_100_mib(host: Host):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, host.url, KEY], check=True, capture_output=True, timeout=300
    ).stdout
    r = json.loads(out)
    print(r)
    assert r["size"] == r["read"] == 1 << 30
    assert r["stored_sha256"] == r["sent_sha256"] == r["read_sha256"]
    assert r["peak_rss_kib"] < 100 * 1024, r
