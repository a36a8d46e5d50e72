"""hypothesis: editing a generated configuration changes the directives' arguments and no other byte."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlsgate import CertificateBundle
from tlsgate.plugin import apply_edits
from tlsgate_apache.config import load
from tlsgate_apache.control import RunConfig
from tlsgate_apache.edits import Paths, plan_edits
from tlsgate_apache.lexer import parse
from tlsgate_testing.certs import TestCA

from .conftest import MemoryConnection

ROOT = "/srv/httpd"
_CA = TestCA()
_ISSUED = _CA.issue("example.test")
BUNDLE = CertificateBundle.from_pem(_ISSUED.cert_pem, _ISSUED.key_pem, _ISSUED.chain_pem)

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
path_chars = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_./ ", min_size=1, max_size=24)
space = st.sampled_from([" ", "  ", "\t", " \t "])
indent = st.sampled_from(["", "    ", "\t", "  \t"])


@st.composite
def argument(draw) -> str:  # type: ignore[no-untyped-def]
    value = draw(path_chars).strip() or "x.pem"
    style = draw(st.sampled_from(["bare", "double", "single"]))
    if style == "bare":
        return value.replace(" ", "_")
    q = '"' if style == "double" else "'"
    return q + value + q


@st.composite
def directive(draw, name: str) -> str:  # type: ignore[no-untyped-def]
    sep = draw(space)
    if draw(st.booleans()):
        sep = " \\\n" + draw(indent) + "  "  # a continued line
    trail = draw(st.sampled_from(["", " ", "\t"]))
    return f"{draw(indent)}{name}{sep}{draw(argument())}{trail}"


@st.composite
def vhost(draw, i: int) -> str:  # type: ignore[no-untyped-def]
    lines = [f"<VirtualHost 127.0.0.1:{8000 + i}>", f"{draw(indent)}ServerName {draw(names)}.test"]
    body = [draw(directive("SSLCertificateFile")), draw(directive("SSLCertificateKeyFile"))]
    if draw(st.booleans()):
        body.append(draw(directive("SSLCertificateChainFile")))
    extras = draw(st.lists(st.sampled_from([
        "# a comment with SSLCertificateFile in it",
        "    DocumentRoot \"/var/www/x y\"",
        "    SSLEngine on",
        "",
        "    Header set X-Test \"a # b\"",
        "    <Location /x>\n        Require all granted\n    </Location>",
    ]), max_size=4))
    for extra in extras:
        body.insert(draw(st.integers(0, len(body))), extra)
    if draw(st.booleans()):
        body = ["<IfModule ssl_module>", *body, "</IfModule>"]
    return "\n".join([*lines, *body, "</VirtualHost>"])


@st.composite
def configs(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(1, 5))
    text = "\n".join(draw(vhost(i)) for i in range(n)) + draw(st.sampled_from(["\n", "", "\n\n"]))
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    chosen = draw(st.lists(st.integers(0, n - 1), min_size=1, unique=True))
    return text.encode(), chosen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), st.sampled_from(["/var/tlsgate-certs", "/etc/ssl/my certs"]))
def test_edit_changes_only_the_arguments(case, certs_dir) -> None:  # type: ignore[no-untyped-def]
    data, chosen_idx = case
    file = f"{ROOT}/sites.conf"
    conn = MemoryConnection({file: data})
    run = RunConfig(server_root=ROOT, main_file=file, modules={"ssl_module"}, includes={file})
    config = load(conn, run)
    sections = list(config.vhosts.values())
    chosen = [sections[i] for i in chosen_idx]
    paths = Paths(cert=f"{certs_dir}/new.crt", key=f"{certs_dir}/new.key", chain=f"{certs_dir}/new.chain.crt")
    edits = plan_edits(config, conn, chosen, BUNDLE, paths)
    new = apply_edits(data, edits.get(file, []))

    # every edit replaces exactly one argument span of a certificate directive of a chosen vhost
    spans = {d.spans[0] for s in chosen for d in s.directives if d.lname != "sslengine"}
    assert {(start, end) for start, end, _ in edits[file]} == spans
    # so every byte outside those spans is unchanged: put the old arguments back, get the old file
    pos, out, shift = 0, [], 0
    for start, end, text in sorted(edits[file]):
        out += [new[pos : start + shift], data[start:end]]
        pos = start + shift + len(text)
        shift += len(text) - (end - start)
    out.append(new[pos:])
    assert b"".join(out) == data

    # and httpd's reading of the new file: chosen vhosts name the new files, the others are as before
    old_tree = load(conn, run)
    conn.files[file] = new
    new_tree = load(conn, run)
    assert len(parse(new, file)) == len(parse(data, file))
    for i, (old_s, new_s) in enumerate(zip(old_tree.vhosts.values(), new_tree.vhosts.values(), strict=True)):
        got = {d.lname: d.args for d in new_s.directives if d.lname != "sslengine"}
        if i in chosen_idx:
            want = {"sslcertificatefile": [paths.cert], "sslcertificatekeyfile": [paths.key]}
            if "sslcertificatechainfile" in got:
                want["sslcertificatechainfile"] = [paths.chain]
            assert got == want
        else:
            assert got == {d.lname: d.args for d in old_s.directives if d.lname != "sslengine"}
