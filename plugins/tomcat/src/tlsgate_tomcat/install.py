"""Installing a certificate into Tomcat: new keystore (or PEM files) + in-place server.xml edit,
validated before the restart and verified by handshake after it, restored on any failure.

Each chosen SSLHostConfig gets its own files under ``conf/tlsgate/`` (named after its port and
host name), so a keystore another host or connector shares is never overwritten. The keystore
keeps the connector's type (JKS or PKCS12; PKCS12 when none is declared), its password and its
alias when the connector has them; otherwise a password is generated for this install
(``secrets``) and lives only in server.xml. Keystores are 0600, plus group read when server.xml
itself is group-readable (Debian: ``root:tomcat 0640``, Tomcat runs as ``tomcat``), and get
server.xml's owner and group.

Tomcat cannot be asked whether a keystore is good (``configtest`` exits 0 when a connector
cannot load it; a wrong password leaves the JVM up with the port dead), so before the restart
the edited server.xml is parsed again and the keystore it now names is opened with the password
it now holds, and must yield the new certificate with its key. After the restart every changed
host must serve the new certificate and every other host what it served before.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

import attrs
from cryptography.hazmat.primitives import serialization
from tlsgate.plugin import (
    OperationError,
    Target,
    Transaction,
    ValidationError,
    expect_served,
    fingerprint,
    key_kind,
    key_matches,
    refuse_pending,
    remove_superseded,
    require_names_covered,
    try_served_fingerprint,
)

from . import keystore, manager, restart, serverxml
from .discovery import keystore_password, load_config, probe_target, read_material, resolve

if TYPE_CHECKING:
    from tlsgate.plugin import CertificateBundle, Connection, Endpoint, InstallResult, Node

    from .discovery import TomcatConfig
    from .serverxml import CertificateConfig, HostConfig

FILES_DIR = ("conf", "tlsgate")
#: every file in conf/tlsgate/ is tlsgate's own (the directory is)
ANY_NAME = re.compile(r"^[^.].*")
DEFAULT_ALIAS = "tomcat"


#: Test seam: called after the new files are checked and before Tomcat loads them (tests use it
#: to break a file honestly on disk). Production code never sets it.
after_validate_hook: Callable[[Connection, Sequence[HostChange]], None] | None = None


@attrs.frozen
class HostChange:
    """What one SSLHostConfig gets: files to write and attribute changes on one element (or,
    when it has no ``<Certificate>`` yet, a new one with those attributes)."""

    host: HostConfig
    certificate: CertificateConfig | None  # None: insert a new <Certificate> into host.element
    files: tuple[tuple[str, bytes, int], ...]  # path, content, mode
    changes: dict[str, str | None] = attrs.field(repr=False)  # may hold a new keystore password
    keystore: tuple[str, str, str] | None = attrs.field(default=None, repr=False)  # path, password, alias

    @property
    def position(self) -> int:
        """Where in server.xml this change edits (edits apply from the end backwards)."""
        element = self.certificate.element if self.certificate is not None else self.host.element
        return element.start if element is not None else 0

    @property
    def index(self) -> int:
        return self.host.certificates.index(self.certificate) if self.certificate is not None else 0


def key_type(bundle: CertificateBundle) -> str:
    """The key type as server.xml's ``<Certificate type>`` spells it."""
    return {"rsa": "RSA", "ec": "EC", "dsa": "DSA"}.get(key_kind(bundle.key), "UNDEFINED")


def select_hosts(hcs: Sequence[HostConfig], nodes: Sequence[Node], bundle: CertificateBundle) -> list[HostConfig]:
    """The host configs to change: the chosen nodes (by locator, else by name), or when none
    are chosen the hosts whose names the certificate covers."""
    if nodes:
        plain = [n for n in nodes if n.protocol == "http"]
        if plain and len(plain) == len(nodes):
            raise ValidationError(f"{plain[0].name} (port {plain[0].port}) is a plain HTTP connector; "
                                  "give it SSLEnabled and an SSLHostConfig first", option="--node")
        out = []
        for node in (n for n in nodes if n.protocol != "http"):
            match = [h for h in hcs if node.locator and h.locator == node.locator]
            if not match:
                match = [
                    h for h in hcs
                    if h.host_name == node.name.lower() and (node.port is None or h.port == node.port)
                ]
            if not match:
                raise ValidationError(f"no TLS host {node.name!r} in server.xml", option="--node")
            out += [h for h in match if h not in out]
        return out
    covered = [h for h in hcs if h.host_name != serverxml.DEFAULT_HOST and bundle.covers(h.host_name)]
    if not covered:
        known = ", ".join(f"{h.host_name} (port {h.port})" for h in hcs) or "none"
        raise ValidationError(
            f"the certificate covers none of the TLS hosts ({known}); choose with --node", option="--node"
        )
    return covered


def _pick_certificate(hc: HostConfig, bundle: CertificateBundle) -> CertificateConfig | None:
    if not hc.certificates:
        if hc.element is None:
            raise ValidationError(f"{hc.locator}: no <SSLHostConfig> to add a certificate to", option="--node")
        return None  # a new <Certificate> goes into the SSLHostConfig
    if len(hc.certificates) == 1:
        return hc.certificates[0]
    want = key_type(bundle)
    for cert in hc.certificates:
        if cert.type == want:
            return cert
    raise ValidationError(
        f"{hc.locator}: several <Certificate> elements and none of type {want}", option="--node"
    )


def _stem(hc: HostConfig) -> str:
    name = hc.host_name.replace("*", "wildcard")
    addr = f"{hc.address}_" if hc.address else ""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{addr}{hc.port}_{name}")


def plan_change(connection: Connection, config: TomcatConfig, hc: HostConfig, bundle: CertificateBundle,
                file_mode: int, alias: str | None = None) -> HostChange:
    picked = _pick_certificate(hc, bundle)
    p = connection.path
    rel_dir = "/".join(FILES_DIR)
    stem = _stem(hc)
    changes: dict[str, str | None] = {}
    if picked is None:
        new_kind = keystore.keystore_kind(None)
        new_password = secrets.token_urlsafe(24)
        new_alias = alias or DEFAULT_ALIAS
        new_ext = "jks" if new_kind == "JKS" else "p12"
        stem = f"{stem}-{bundle.fingerprint[:12]}"
        changes = {
            "certificateKeystoreFile": f"{rel_dir}/{stem}.{new_ext}",
            "certificateKeystorePassword": new_password,
            "certificateKeystoreType": new_kind,
            "certificateKeyAlias": new_alias,
            "type": key_type(bundle),
        }
        new_path = p.join(config.base, *FILES_DIR, f"{stem}.{new_ext}")
        new_data = keystore.write_keystore(new_kind, bundle, new_alias, new_password)
        return HostChange(hc, None, ((new_path, new_data, file_mode),), changes,
                          keystore=(new_path, new_password, new_alias))
    cert = picked
    current_type = cert.type
    if len(hc.certificates) == 1 and current_type not in ("UNDEFINED", key_type(bundle)) and "type" in cert.values:
        changes["type"] = key_type(bundle)  # a single Certificate must not claim another key type
    if cert.uses_pem:
        stem = f"{stem}-{bundle.fingerprint[:12]}"
        key_pw = cert.get("certificateKeyPassword")
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(key_pw.encode()) if key_pw else serialization.NoEncryption()
        )
        key_pem = bundle.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
        files = [
            (p.join(config.base, *FILES_DIR, f"{stem}.crt"), bundle.cert_pem(), file_mode | 0o044),
            (p.join(config.base, *FILES_DIR, f"{stem}.key"), key_pem, file_mode),
        ]
        changes[cert.attribute_name("certificateFile")] = f"{rel_dir}/{stem}.crt"
        changes[cert.attribute_name("certificateKeyFile")] = f"{rel_dir}/{stem}.key"
        if bundle.chain:
            files.append((p.join(config.base, *FILES_DIR, f"{stem}.chain.crt"), bundle.chain_pem(), file_mode | 0o044))
            changes[cert.attribute_name("certificateChainFile")] = f"{rel_dir}/{stem}.chain.crt"
        elif cert.get("certificateChainFile") is not None:
            changes[cert.attribute_name("certificateChainFile")] = None
        return HostChange(hc, cert, tuple(files), changes)

    declared = cert.get("certificateKeystoreType")
    kind = keystore.keystore_kind(declared, _current_keystore(connection, config.base, cert))
    if declared is None or declared.upper() != kind:
        changes[cert.attribute_name("certificateKeystoreType")] = kind
    password = cert.get("certificateKeystorePassword")
    if password is None and cert.get("certificateKeystorePasswordFile"):
        password = keystore_password(connection, config.base, cert)
    if password and re.search(r"\$\{[^}]+\}", password):
        raise ValidationError(
            f"{hc.locator}: the keystore password is a property reference tlsgate cannot resolve "
            "(not in conf/catalina.properties); define it there or set the password in server.xml",
            option="--node",
        )
    if not password:
        password = secrets.token_urlsafe(24)
        changes[cert.attribute_name("certificateKeystorePassword")] = password
    current_alias = cert.get("certificateKeyAlias")
    alias = alias or current_alias or DEFAULT_ALIAS  # the operator's --alias wins
    if alias != current_alias:
        changes[cert.attribute_name("certificateKeyAlias")] = alias
    if cert.get("certificateKeyPassword") is not None:
        changes[cert.attribute_name("certificateKeyPassword")] = None  # the key now uses the store password
    ext = "jks" if kind == "JKS" else "p12"
    # a new file per certificate: never the keystore the running connector was started with
    name = f"{stem}-{bundle.fingerprint[:12]}.{ext}"
    path = p.join(config.base, *FILES_DIR, name)
    changes[cert.attribute_name("certificateKeystoreFile")] = f"{rel_dir}/{name}"
    data = keystore.write_keystore(kind, bundle, alias, password)
    return HostChange(hc, cert, ((path, data, file_mode),), changes, keystore=(path, password, alias))


def _current_keystore(connection: Connection, base: str, cert: CertificateConfig) -> bytes | None:
    """The first bytes of the keystore the connector uses now (its format wins over an absent
    or wrong ``certificateKeystoreType``: a JKS file stays JKS), or None."""
    ks_file = cert.get("certificateKeystoreFile")
    if not ks_file or ks_file.upper() == "NONE" or "${" in ks_file:
        return None
    try:
        return connection.read_file(resolve(connection, base, ks_file))[:4]
    except OperationError:
        return None


#: conf files besides server.xml whose change a restart would apply
PENDING_CONF = ("server.xml", "context.xml", "web.xml", "tomcat-users.xml", "catalina.properties",
                "jaspic-providers.xml", "logging.properties")


def pending_check(connection: Connection, base: str, config: TomcatConfig) -> None:
    """Refuse when server.xml or another conf file changed after the running JVM started."""
    procs = restart.tomcat_processes(connection, base)
    if not procs:
        return
    p = connection.path
    files = [config.path, *(p.join(base, "conf", f) for f in PENDING_CONF[1:])]
    refuse_pending(connection, files, procs[0].pid, "Tomcat")


def edit_server_xml(config: TomcatConfig, changes: Sequence[HostChange]) -> bytes:
    data = config.xml.data
    encoding = config.xml.encoding
    for change in sorted(changes, key=lambda c: c.position, reverse=True):
        if change.certificate is not None:
            data = serverxml.edit_start_tag(data, change.certificate.element, change.changes, encoding=encoding)
        elif change.host.element is not None:
            attributes = b" ".join(
                name.encode() + b'="' + serverxml.escape_attribute(value, b'"', encoding) + b'"'
                for name, value in change.changes.items()
                if value is not None
            )
            data = serverxml.insert_child(data, change.host.element, b"<Certificate " + attributes + b" />")
    return data


def validate_before_restart(
    connection: Connection, base: str, new_xml: bytes, changes: Sequence[HostChange], bundle: CertificateBundle
) -> None:
    """Read back what was written, through the edited server.xml, as Tomcat will."""
    for change in changes:
        if change.keystore is not None:
            path, password, alias = change.keystore
            try:
                keystore.check_written(connection.read_file(path), password, alias, bundle)
            except keystore.KeystoreError as exc:
                raise OperationError(f"{path}: {exc}") from None
    edited = load_config(connection, base, data=new_xml)
    for change in changes:
        hc = edited.xml.find(change.host.locator)
        if hc is None:
            raise OperationError(f"the edited server.xml lost {change.host.locator}")
        index = change.index  # offsets moved; positions did not
        cert = hc.certificates[index] if index < len(hc.certificates) else None
        if cert is None:
            raise OperationError(f"the edited server.xml lost the Certificate of {change.host.locator}")
        material = read_material(connection, base, cert)
        if material.certificate is None:
            raise OperationError(f"{change.host.locator}: Tomcat could not load the new certificate: {material.error}")
        if fingerprint(material.certificate) != bundle.fingerprint:
            raise OperationError(f"{change.host.locator}: the edited configuration names another certificate")
        if material.key is None or not key_matches(material.certificate, material.key):
            raise OperationError(f"{change.host.locator}: the new key does not open or does not match")


def install(endpoint: Endpoint, connection: Connection, bundle: CertificateBundle, nodes: Sequence[Node],
            dry_run: bool, alias: str | None = None) -> InstallResult:
    base = endpoint.options.tomcat_dir
    config = load_config(connection, base)
    hcs = config.host_configs()
    chosen = select_hosts(hcs, nodes, bundle)
    require_names_covered(bundle, [_host_node(hc) for hc in chosen])
    pending_check(connection, base, config)
    xml_stat = connection.stat(config.path)
    file_mode = 0o600 | ((xml_stat.mode & 0o040) if xml_stat else 0)
    changes = [plan_change(connection, config, hc, bundle, file_mode, alias) for hc in chosen]
    new_xml = edit_server_xml(config, changes)
    plan = restart.plan_restart(
        connection, base, service=endpoint.options.tomcat_service, home=endpoint.options.tomcat_home
    )
    kind = key_kind(bundle.key)  # a host with an RSA and an EC <Certificate> is checked for the one replaced
    before = {hc.locator: _served(endpoint, hc, kind) for hc in hcs} if not dry_run else {}
    # Manager credentials: reload the changed hosts in place (no restart); else restart, and say why
    in_place, why_restart = manager.plan_in_place(endpoint, connection, config, changes)
    restarted: dict[str, str] = {}
    changed = {c.host.locator for c in changes}
    files_dir = connection.path.join(base, *FILES_DIR)

    with Transaction(connection, dry_run=dry_run, label=f"tomcat install on {endpoint.name}") as tx:
        if not dry_run and not connection.exists(files_dir):
            connection.makedirs(files_dir, mode=0o750)
            connection.chown_like(files_dir, config.path)
        for change in changes:
            for path, data, mode in change.files:
                tx.write(path, data, mode=mode, detail=f"{change.host.locator}, mode {mode:o}")
                if not dry_run:
                    connection.chown_like(path, config.path)
        names = sorted({name for c in changes for name in c.changes})
        tx.write(config.path, new_xml, base=config.xml.data,  # names only below: values may be secret
                 detail="set " + ", ".join(names))
        if tx.step("verify", "new keystores", "re-open through the edited server.xml"):
            validate_before_restart(connection, base, new_xml, changes, bundle)
            if after_validate_hook is not None:
                after_validate_hook(connection, changes)
        if plan.method != "windows-service":
            tx.run(restart.configtest_argv(base, plan), what="catalina.sh configtest",
                   explain=restart.describe_configtest, privileged=bool(plan.run_as))  # runuser needs root
        # Connectors that were down before the install are not this install's to fix.
        was_up = {(hc.address, hc.port) for hc in hcs if before.get(hc.locator) is not None}
        must_listen = was_up | {(c.host.address, c.host.port) for c in changes}
        targets = [t for c in changes if (t := probe_target(endpoint, c.host, kind)) is not None]
        old = {t: fp for c in changes if (t := probe_target(endpoint, c.host, kind)) and (fp := before.get(c.host.locator))}
        reloaded = in_place is not None and _reload_in_place(tx, in_place, targets, bundle, old, restarted)
        if in_place is not None and not reloaded and not dry_run:
            why_restart = f"the in-place reload failed ({restarted['why']})"
        if not reloaded:
            tx.on_rollback(lambda: restart_and_wait(endpoint, connection, config, plan, was_up), "restart Tomcat again")
            if tx.step("restart", plan.describe(), why_restart):
                restarted["done"] = "yes"
                tx.messages.append(restart_and_wait(endpoint, connection, config, plan, must_listen))
                tx.messages.append(f"restarted Tomcat (every connector was down for the restart): {why_restart}")
        if tx.step("verify", "TLS handshake", ", ".join(sorted(changed))):
            expect_served(targets, bundle.fingerprint, deadline=15)
            for hc in hcs:
                old = before.get(hc.locator)
                target = probe_target(endpoint, hc, kind)
                if hc.locator in changed or old is None or target is None:
                    continue
                expect_served([target], old, deadline=10)
        for change in changes if not dry_run else ():
            served_from = change.keystore[0] if change.keystore else change.files[0][0]
            tx.messages.append(f"{change.host.locator} now serves from {served_from}")
    if not dry_run:  # verified (a failed verification raised): tidy conf/tlsgate/
        texts = [new_xml]
        props = connection.path.join(base, "conf", "catalina.properties")
        if connection.exists(props):
            texts.append(connection.read_file(props))
        written = [path for c in changes for path, _, _ in c.files]
        removed = remove_superseded(connection, files_dir, texts, keep=written, own=ANY_NAME)
        if removed:
            tx.messages.append("removed superseded tlsgate files no configuration references: " + ", ".join(removed))
    return tx.result(
        nodes=tuple(c.host.host_name for c in changes),
        verified=not dry_run,
        alias=next((c.keystore[2] for c in changes if c.keystore), None),
    )


def _reload_in_place(tx: Transaction, plan: manager.InPlacePlan, targets: Sequence[Target],
                     bundle: CertificateBundle, old: dict[Target, str], restarted: dict[str, str]) -> bool:
    """Repoint and reload the changed hosts in place; True when they serve the new certificate.
    False when the Manager failed on the way (the caller restarts, which reads server.xml again).
    The reload answers OK even with a key that does not fit, so the handshake decides: when it
    does not show the new certificate the install fails, and the rollback points the hosts at
    their old files and reloads them in place again (no restart either way)."""
    if not tx.step("reload", plan.describe(), "in place: the JVM and every other connector stay up"):
        return True  # a dry run: the plan shows the reload, not a restart

    def revert() -> None:
        if restarted.get("done"):
            return  # the restarted JVM read the restored server.xml
        plan.revert()
        for target, fp in old.items():
            expect_served([target], fp, deadline=IN_PLACE_DEADLINE)

    tx.on_rollback(revert, "reload the old certificate in place")
    try:
        plan.apply()
    except OperationError as exc:
        restarted["why"] = str(exc)
        return False
    try:
        expect_served(targets, bundle.fingerprint, deadline=IN_PLACE_DEADLINE)
    except OperationError as exc:
        raise OperationError(f"the in-place reload answered OK but the handshake disagrees: {exc}") from None
    tx.messages.append(f"reloaded in place, Tomcat not restarted: {plan.describe()}")
    return True


#: how long the in-place reload may take to show in a handshake (it is synchronous)
IN_PLACE_DEADLINE = 5.0


def _host_node(hc: HostConfig) -> Node:
    """The names an SSLHostConfig answers for (the connector's default host: none of its own)."""
    from tlsgate.plugin import Node

    name = "" if hc.host_name == serverxml.DEFAULT_HOST else hc.host_name
    return Node(name=name, ip=hc.address, port=hc.port)


def _served(endpoint: Endpoint, hc: HostConfig, key_kind: str | None = None) -> str | None:
    target = probe_target(endpoint, hc, key_kind)
    return try_served_fingerprint(target.host, target.port, target.sni, key_kind=target.key_kind) if target else None


def connector_targets(
    endpoint: Endpoint, config: TomcatConfig, only: Collection[tuple[str | None, int | None]] | None = None
) -> list[Target]:
    """One probe target per TLS connector (``only``: those whose (address, port) is listed)."""
    targets = [
        probe_target(endpoint, hc)
        for hc in config.host_configs()
        if only is None or (hc.address, hc.port) in only
    ]
    return list(dict.fromkeys(Target(t.host, t.port) for t in targets if t is not None))


def restart_and_wait(
    endpoint: Endpoint,
    connection: Connection,
    config: TomcatConfig,
    plan: restart.RestartPlan,
    must_listen: Collection[tuple[str | None, int | None]] | None = None,
) -> str:
    """Restart, then wait until the TLS connectors (``must_listen``, default all) answer."""
    since = restart.log_size(connection, config.base, plan) if plan.method != "windows-service" else 0
    message = restart.restart(connection, config.base, plan, shutdown_port=config.xml.shutdown_port)
    gone: dict[str, float] = {}

    def exited() -> bool:
        # the JVM is gone (for a moment longer than a start takes to exec java)
        if plan.method == "windows-service" or restart.tomcat_processes(connection, config.base):
            gone.clear()
            return False
        first = gone.setdefault("t", time.monotonic())
        return time.monotonic() - first > 5.0

    closed = restart.wait_for_ports(connector_targets(endpoint, config, must_listen), exited=exited)
    if closed and gone and exited():
        raise OperationError(
            f"Tomcat exited during its start: {restart.exit_reason(connection, config.base, plan, since)}"
        )
    if closed:
        # the JVM runs on without a connector that failed (a port taken, a keystore that does not
        # open): its log says why
        why = restart.log_reason(connection, config.base, plan, since) if plan.method != "windows-service" else ""
        raise OperationError(
            "Tomcat restarted but these TLS connectors do not listen: " + ", ".join(str(t) for t in closed)
            + (f": {why}" if why else "")
        )
    return message
