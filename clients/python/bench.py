"""1 GiB up and down through the Python client vs curl, on the same `stowage serve` in the same
run; prints each best time and the client's speed as a ratio of curl's (>= 0.8 is the goal).

    target/tools/pyclient/bin/python clients/python/bench.py [--stowage target/release/stowage] [--rounds 3]

curl sends the file with `-T` and a sha256 computed beforehand (not timed), and writes the
download to /dev/null; the client reads the same file (its sha256 computed on the way, sent
through an upload session) and checks the download's sha256 as it reads. Both over plain HTTP
on 127.0.0.1 (development mode), the host's disk in a temporary directory.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stowage_client import Client  # noqa: E402
from tests import conftest  # noqa: E402  (the tests' host: same config, same start)

SIZE = 1 << 30


def timed(f) -> float:
    t = time.monotonic()
    f()
    return time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stowage", default=str(conftest.STOWAGE))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    conftest.STOWAGE = Path(args.stowage)
    with tempfile.TemporaryDirectory(prefix="stowage-pybench-") as tmp:
        d = Path(tmp)
        src = d / "1gib.bin"
        block = os.urandom(1 << 20)
        digest = hashlib.sha256()
        with open(src, "wb") as f:
            for i in range(SIZE // len(block)):
                b = i.to_bytes(4, "big") + block[4:]
                f.write(b)
                digest.update(b)
        sha = digest.hexdigest()
        (d / "host").mkdir()
        host = conftest.Host(d / "host")
        client = Client(host.url, conftest.KEY, development=True)
        obj = f"{host.url}/v1/objects/default/bench/curl.bin"
        auth = ["-H", f"Authorization: Bearer {conftest.KEY}"]

        def curl_up() -> None:
            subprocess.run(
                ["curl", "-sSf", "-o", "/dev/null", *auth, "-H", f"x-stowage-sha256: {sha}", "-T", str(src), obj],
                check=True,
            )

        def curl_down() -> None:
            subprocess.run(["curl", "-sSf", "-o", "/dev/null", *auth, obj], check=True)

        def client_up() -> None:
            with open(src, "rb") as f:
                info = client.put("default", "bench/client.bin", f)
            assert info.sha256 == sha

        def client_down() -> None:
            with client.get("default", "bench/client.bin") as r:
                for _ in r.iter_chunks():
                    pass

        best = {k: float("inf") for k in ("curl_up", "client_up", "curl_down", "client_down")}
        try:
            for _ in range(args.rounds):
                for name, f in (("curl_up", curl_up), ("client_up", client_up)):
                    best[name] = min(best[name], timed(f))
                for name, f in (("curl_down", curl_down), ("client_down", client_down)):
                    best[name] = min(best[name], timed(f))
        finally:
            client.close()
            host.stop()
    mib = SIZE / (1 << 20)
    for way in ("up", "down"):
        c, p = best[f"curl_{way}"], best[f"client_{way}"]
        print(
            f"{way:>4}: curl {c:6.2f} s ({mib / c:6.0f} MiB/s)  client {p:6.2f} s ({mib / p:6.0f} MiB/s)"
            f"  client/curl speed {c / p:.2f}x"
        )


if __name__ == "__main__":
    main()
