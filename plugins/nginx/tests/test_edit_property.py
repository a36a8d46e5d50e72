"""Property: an install's edit changes only the two directives' arguments (or, for a block that
inherits its certificate, only adds its own two directives), whatever the file looks like."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nginx_helpers import MemoryConnection
from tlsgate import CertificateBundle
from tlsgate.plugin import apply_edits
from tlsgate_nginx.config import load
from tlsgate_nginx.install import plan_edits
from tlsgate_nginx.lexer import parse
from tlsgate_testing.certs import TestCA

_CA = TestCA("edit property")
_ISSUED = _CA.issue("site0.test")
BUNDLE = CertificateBundle.from_pem(_ISSUED.cert_pem, _ISSUED.key_pem)

ws = st.sampled_from([" ", "  ", "\t", " \t ", "\n    ", "\r\n\t"])
comment = st.sampled_from(["", " # note", " # { ; } 'x\"", "\n# ssl_certificate /old.pem;"])
path_text = st.text(alphabet="abc-_./ xyz", min_size=1, max_size=12).map(lambda s: "/etc/nginx/" + s.strip())


def quoted(value: str, style: str) -> str:
    if style == "double":
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if style == "single":
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return value if " " not in value else '"' + value + '"'


@st.composite
def server_block(draw, i: int) -> str:
    sp = draw(ws)
    style = draw(st.sampled_from(["bare", "double", "single"]))
    inherit = draw(st.booleans())
    parts = [f"server{sp}{{{draw(comment)}\n"]
    parts.append(f"    listen{sp}{8000 + i % 3}{sp}ssl;{draw(comment)}\n")
    parts.append(f"    server_name site{i}.test{sp}www{i}.test;\n")
    if not inherit:
        parts.append(f"    ssl_certificate{sp}{quoted(draw(path_text), style)}{draw(ws)};{draw(comment)}\n")
        parts.append(f"{draw(ws)}ssl_certificate_key {quoted(draw(path_text), style)};\n")
    parts.append(f"    location / {{ return 200 '{{ ; }}'; }}{draw(comment)}\n")
    if draw(st.booleans()):
        return "".join(parts) + "}\n"
    return "".join(parts).replace("\n", " ", 1) + "}"  # some blocks start on one line


@st.composite
def configs(draw):
    n = draw(st.integers(1, 6))
    blocks = [draw(server_block(i)) for i in range(n)]
    split = draw(st.integers(1, n))
    files = {
        "/etc/nginx/nginx.conf": (
            b"events {}\nhttp {\n  ssl_certificate /etc/nginx/http.pem; # shared\n"
            b"  ssl_certificate_key /etc/nginx/http.key;\n  include sites/*.conf;\n}\n"
        ),
        "/etc/nginx/sites/a.conf": "".join(blocks[:split]).encode(),
        "/etc/nginx/sites/b.conf": "".join(blocks[split:]).encode(),
    }
    chosen = draw(st.sets(st.integers(0, n - 1), min_size=1))
    new_dir = draw(st.sampled_from(["/etc/nginx", "/etc/nginx/my certs", '/srv/q"uote']))
    return files, chosen, new_dir


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_edit_keeps_every_other_byte(case) -> None:
    files, chosen_idx, new_dir = case
    conn = MemoryConnection(files)
    config = load(conn, "/etc/nginx/nginx.conf")
    chosen = [config.servers[i] for i in sorted(chosen_idx)]
    cert_path, key_path = f"{new_dir}/new.fullchain.pem", f"{new_dir}/new.key.pem"
    edits = plan_edits(config, conn, chosen, BUNDLE, cert_path, key_path)
    assert "/etc/nginx/nginx.conf" not in edits  # the shared http-level pair is never changed

    new_files = dict(files)
    for file, file_edits in edits.items():
        old = files[file]
        new = apply_edits(old, file_edits)
        new_files[file] = new
        # every edit is either an argument replacement or a pure insertion of the two directives
        for start, end, text in file_edits:
            if start == end:
                added = parse(text, "inserted")
                assert [(d.name, d.args) for d in added] == [
                    ("ssl_certificate", [cert_path]), ("ssl_certificate_key", [key_path])
                ]
            else:
                assert parse(b"x " + old[start:end] + b";", "old")[0].args[0] in {
                    s.certificates[0] for s in chosen if not s.inherited
                } | {s.keys[0] for s in chosen if not s.inherited}
        # removing what was inserted / putting the old argument text back gives the old file
        rebuilt = apply_edits(new, _inverse(old, file_edits))
        assert rebuilt == old

    after = load(MemoryConnection(new_files), "/etc/nginx/nginx.conf")
    assert len(after.servers) == len(config.servers)
    for i, (was, now) in enumerate(zip(config.servers, after.servers, strict=True)):
        assert now.names == was.names
        assert [(x.ip, x.port, x.ssl) for x in now.listens] == [(x.ip, x.port, x.ssl) for x in was.listens]
        if i in chosen_idx:
            assert (now.certificates, now.keys, now.inherited) == ([cert_path], [key_path], False)
        else:
            assert (now.certificates, now.keys, now.inherited) == (was.certificates, was.keys, was.inherited)


def _inverse(old: bytes, edits):
    """Edits that turn the new file back into ``old``, in the new file's offsets."""
    out = []
    shift = 0
    for start, end, text in sorted(edits):
        out.append((start + shift, start + shift + len(text), old[start:end]))
        shift += len(text) - (end - start)
    return out
