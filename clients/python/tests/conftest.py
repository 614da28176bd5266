"""Real `stowage serve` processes for the tests: the repo's `target/debug/stowage` (or
`$STOWAGE_BIN`) on 127.0.0.1 with a temporary config (a local-fs disk for every class, the
phi-tracking policy and a ledger), in development mode or over TLS with a CA made here."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Iterator, Optional

import pytest

from stowage_client import Client

REPO = Path(__file__).resolve().parents[3]
STOWAGE = Path(os.environ.get("STOWAGE_BIN", REPO / "target" / "debug" / "stowage"))
KEY = "test-key-0123456789abcdef0123456789abcdef"
KEY2 = "test-key-two-0123456789abcdef0123456789abcdef"
URL_SECRET = "url-secret-0123456789abcdef0123456789abcdef"

CONFIG = """role = "services"
[disks.local]
plugin = "local-fs"
grant = {{ dir = "data" }}
[storage]
default = "local"
scratch = "local"
submission = "local"
[[policies]]
plugin = "phi-tracking"
[ledger]
path = "ledger.sqlite"
[server]
api_keys = [
  {{ name = "web-1", key = {{ env = "STOWAGE_TEST_KEY" }} }},
  {{ name = "web-2", key = {{ env = "STOWAGE_TEST_KEY2" }} }},
]
url_secret = {{ env = "STOWAGE_TEST_URL_SECRET" }}
{server}
{limits}
"""


class Host:
    """A running `stowage serve` in `dir`, stopped by `stop`."""

    def __init__(self, dir: Path, server: str = "dev_mode = true", limits: str = "") -> None:
        if not STOWAGE.exists():
            pytest.fail(f"{STOWAGE} is missing: run `cargo build --bin stowage` first (tests/run does)")
        self.dir = dir
        (dir / "data").mkdir(exist_ok=True)
        self.config = dir / "stowage.toml"
        self.config.write_text(CONFIG.format(server=server, limits=limits))
        env = dict(os.environ, STOWAGE_TEST_KEY=KEY, STOWAGE_TEST_KEY2=KEY2, STOWAGE_TEST_URL_SECRET=URL_SECRET)
        for name in ("STOWAGE_CONFIG", "STOWAGE_LOG", "RUST_LOG"):
            env.pop(name, None)
        # Compiled plugins are cached under target/, as the Rust tests do, not in ~/.cache.
        env["STOWAGE_CACHE_DIR"] = str(REPO / "target" / "tmp" / "pyclient-stowage-cache")
        self.proc = subprocess.Popen(
            [str(STOWAGE), "--config", str(self.config), "serve", "--listen", "127.0.0.1:0"],
            cwd=dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=open(dir / "serve.log", "wb"),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        prefix = "stowage: serving on "
        if not line.startswith(prefix):
            self.stop()
            pytest.fail(f"stowage serve did not start: {line!r}\n{(dir / 'serve.log').read_text()}")
        self.url = line[len(prefix) :]
        self.port = int(self.url.rsplit(":", 1)[1])

    def client(self, **kw: object) -> Client:
        """A client of this host with the test key."""
        kw.setdefault("development", self.url.startswith("http:"))
        return Client(self.url, KEY, **kw)  # type: ignore[arg-type]

    def ledger(self, path: Optional[str] = None) -> list[dict]:
        """The ledger's records (those of `path`), read with `stowage ledger export`."""
        out = subprocess.run(
            [str(STOWAGE), "--config", str(self.config), "ledger", "export", "--format", "json"],
            cwd=self.dir,
            check=True,
            capture_output=True,
        ).stdout
        records = json.loads(out)
        return [r for r in records if path is None or r.get("path") == path]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="session")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    h = Host(tmp_path_factory.mktemp("host"))
    yield h
    h.stop()


@pytest.fixture
def client(host: Host) -> Iterator[Client]:
    c = host.client()
    yield c
    c.close()


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_test_ca(dir: Path) -> None:
    """`ca.pem` and a server certificate for 127.0.0.1 signed by it (`server.pem`, `server.key`)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Stowage test CA", cwd=dir)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=dir)
    (dir / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=dir,
    )


@pytest.fixture(scope="session")
def tls_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    d = tmp_path_factory.mktemp("tls-host")
    make_test_ca(d)
    h = Host(d, 'tls = { cert = "server.pem", key = "server.key" }')
    yield h
    h.stop()


class Proxy:
    """A TCP proxy on 127.0.0.1 to `port` that cuts its first connection after `cut_after`
    bytes from the client (closing both sides), and replaces `swap[0]` with `swap[1]` in what
    the host sends back (a network that corrupts); otherwise bytes pass through."""

    def __init__(self, port: int, cut_after: Optional[int] = None, swap: Optional[tuple[bytes, bytes]] = None) -> None:
        self.upstream = port
        self.cut_after = cut_after
        self.swap = swap
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        first = True
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream))
            limit = self.cut_after if first else None
            first = False
            threading.Thread(target=self._pipe, args=(down, up, limit), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, down, None, self.swap), daemon=True).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, limit: Optional[int], swap: Optional[tuple[bytes, bytes]] = None
    ) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if swap is not None:
                    data = data.replace(*swap)
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: limit - sent])
                    self.cuts += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()
