"""Discovery of a bind with many certificates (a crt-list), through the CLI (a subprocess, stdout
piped): a port that does not answer TLS costs one try, not one per certificate name."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

CERTS = 30


def test_a_silent_port_of_a_large_crt_list_is_tried_once(tlsgate_home: Path, test_ca, tmp_path: Path) -> None:
    # what answers on the bind's port: TCP, then nothing (a hung process, a filtered TLS port)
    silent = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = silent.getsockname()[1]
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not done.is_set():
            try:
                held.append(silent.accept()[0])  # never answers the ClientHello
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    lines = []
    for i in range(CERTS):
        issued = test_ca.issue(f"app{i}.example.com")
        pem = tmp_path / f"app{i}.pem"
        pem.write_bytes(issued.cert_pem + issued.chain_pem + issued.key_pem)
        lines.append(f"{pem} [alpn h2,http/1.1] app{i}.example.com\n")
    (tmp_path / "certs.list").write_text("".join(lines))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"frontend https\n    bind 127.0.0.1:{port} ssl crt-list {tmp_path / 'certs.list'}\n"
                   "    default_backend none\nbackend none\n")
    env = os.environ.copy()

    def tg(*args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True, env=env,
                             timeout=600, check=False)
        assert res.returncode == 0, res.stderr
        return res

    try:
        tg("tls", "add", "haproxy", "--name", "lb", "--connection_type", "local", "--haproxy_config_path", str(cfg))
        tg("org", "add", "acme")
        tg("tls", "delegate", "lb", "--org", "acme")
        nodes = json.loads(tg("tls", "discover", "lb", "--json").stdout)
    finally:
        done.set()
        thread.join()
        for s in held:
            s.close()
        silent.close()
    assert sorted(n["name"] for n in nodes) == sorted(f"app{i}.example.com" for i in range(CERTS))
    assert all("not reachable" in n["state"] for n in nodes), [n["state"] for n in nodes]
    # one connection found the port silent; the other 29 names were not tried (each try waits
    # for the handshake timeout: 30 names, 90 s)
    assert len(held) == 1, len(held)
