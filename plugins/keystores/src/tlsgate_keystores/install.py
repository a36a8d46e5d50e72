"""Install for p12, jks and pem endpoints, over any :class:`tlsgate.plugin.Connection`.

Every byte is read with ``connection.read_file`` and written through :class:`tlsgate.Transaction`
(backup, atomic write keeping the file's mode, restore on failure), so a remote endpoint needs no
change here. An install:

1. checks the scripts can run (exists, executable, root/Administrator for local) and opens the
   keystore with the store password: nothing is written if either fails;
2. replaces the entry of the alias (``--alias``, else every chosen node's entry, else the alias
   derived from the certificate's CN) or adds it, keeping every other entry;
3. writes the file, reads it back and parses it (the new entry with the new certificate, every
   other alias still there) before the transaction commits; any failure restores the file
   byte for byte;
4. runs the install script with the alias as its only argument (once per entry written). The keystore write has then
   succeeded and stays: the reference document runs the script only "after the certificate and
   private key entries have been successfully created", and rolling the keystore back because a
   post-install hook failed would leave the operator with neither the new certificate nor a
   clear state. A failing script raises :class:`InstallScriptFailed` (exit 1), which says that
   the keystore *was* updated and carries the script's stderr tail and the install result.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
from tlsgate.plugin import OperationError, PlanStep, Transaction, ValidationError, fingerprint, key_matches

from . import scripts
from .discovery import failure, load, option_secret
from .entries import KeyEntry, TrustedEntry, check_alias
from .errors import KeystoreError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.serialization import pkcs12
    from tlsgate.plugin import CertificateBundle, Connection, Endpoint, InstallResult, Node

    from .discovery import Loaded
    from .entries import Keystore


class InstallScriptFailed(OperationError):
    """The entry was written and verified, then the install script failed. ``result`` is the
    install's result (the keystore change is not rolled back)."""

    def __init__(self, message: str, *, result: InstallResult, host: str | None = None) -> None:
        self.result = result
        super().__init__(message, rolled_back=False, host=host)


def choose_aliases(endpoint: Endpoint, bundle: CertificateBundle, nodes: Sequence[Node], alias: str | None) -> list[str]:
    """The entries the install writes: ``--alias``; else every chosen node's entry (``--node``
    repeated, or the nodes ``cert deploy --replaces`` found serving the old certificate: one
    certificate kept under several aliases is renewed in all of them, in one write); else the
    alias derived from the certificate's CN."""
    if alias:
        return [check_alias(alias, option="--alias", bmp_only=endpoint.type == "jks")]
    if endpoint.type != "pem" and nodes:
        chosen: list[str] = []
        for node in nodes:
            name = node.locator or node.name
            if name.casefold() not in {c.casefold() for c in chosen}:
                chosen.append(check_alias(name, option="--node", bmp_only=endpoint.type == "jks"))
        return chosen
    return [check_alias(bundle.default_alias(), option="--alias", bmp_only=endpoint.type == "jks")]


def install(endpoint: Endpoint, connection: Connection, bundle: CertificateBundle, nodes: Sequence[Node],
            dry_run: bool, alias: str | None) -> InstallResult:
    opts = endpoint.options
    aliases = choose_aliases(endpoint, bundle, nodes, alias)
    if opts.install_script:
        scripts.preflight(endpoint, connection, opts.install_script, "--install_script")
    password = (option_secret(opts, "store_password") or "") if endpoint.type != "pem" else ""
    try:
        loaded = load(endpoint, connection, password)
        if endpoint.type == "pem":
            return _install_pem(endpoint, connection, bundle, loaded, dry_run, aliases[0])
        if loaded.store.format == "jks":
            aliases = [a.lower() for a in aliases]  # Java lowercases JKS aliases; pyjks writes them so
        olds = [loaded.store.find(a) for a in aliases]
        for old in olds:
            if isinstance(old, TrustedEntry):
                raise ValidationError(
                    f"{old.alias!r} is a trusted certificate entry in {opts.path}; choose another alias",
                    option="--node" if nodes and not alias else "--alias",
                )
        own_password = []
        if loaded.store.format == "jks":
            from . import jks_codec

            own_password = [o.alias for o in olds
                            if isinstance(o, KeyEntry) and jks_codec.own_key_password(o, password)]
        new_store = loaded.store
        for entry_alias in aliases:
            new_store = new_store.with_entry(KeyEntry(entry_alias, (bundle.leaf, *bundle.chain), bundle.key))
        new_data = _dump(endpoint, new_store, password)
    except KeystoreError as exc:
        raise failure(endpoint, connection, exc) from None
    with Transaction(connection, dry_run=dry_run, label=f"install into {opts.path}") as tx:
        detail = f"{bundle.subject}, SHA-256 {bundle.fingerprint[:16]}..."
        for entry_alias, old in zip(aliases, olds, strict=True):
            tx.step("replace-entry" if old is not None else "add-entry", f"{opts.path} alias {entry_alias}", detail)
        tx.write(opts.path, new_data, base=loaded.data, detail=f"{loaded.store.format} keystore, {len(new_store.entries)} entries")
        if not dry_run:
            _verify(endpoint, connection, bundle, aliases, [e.alias for e in new_store.entries], password)
            for entry_alias, old in zip(aliases, olds, strict=True):
                tx.messages.append(f"{'replaced' if old else 'added'} entry {entry_alias!r} in {opts.path}")
            tx.messages.extend(
                f"note: entry {a!r} had a key password of its own; its new key is protected with the store "
                "password (as keytool does): set the application's key password to the store password "
                "(e.g. Tomcat certificateKeyPassword)" for a in own_password)
        if endpoint.type == "p12" and loaded.store.layout.get("legacy") and not opts.is_legacy:
            tx.messages.append("note: the file had the legacy PKCS#12 profile and is now PBES2/AES-256 "
                               "(--is_legacy false): Java before 8u301/11.0.12 and Windows Server 2016 cannot read it")
        if new_store.format == "pkcs12" and not password.isascii():
            tx.messages.append("note: Java cannot open a PKCS#12 file whose password is not ASCII")
    return _after(endpoint, connection, tx, aliases, aliases)


def _dump(endpoint: Endpoint, store: Keystore, password: str) -> bytes:
    if endpoint.type == "p12":
        from . import p12_codec

        return p12_codec.dump(store, password, legacy=bool(endpoint.options.is_legacy))
    from . import jks_codec

    return jks_codec.dump(store, password)


def _verify(
    endpoint: Endpoint, connection: Connection, bundle: CertificateBundle, written: list[str], aliases: list[str],
    password: str,
) -> None:
    """Read the written file back and parse it before the transaction commits. A PKCS#12 file
    must also open with ``cryptography``'s own reader (an independent check of our MAC and of
    every bag's encryption); a p12 endpoint's file is opened by it first, so our reader does not
    verify the same MAC again, and what cryptography read must hold the new certificate (and,
    when it is the entry cryptography returns the key of, the key that belongs to it): our
    reader may take a certificate safe it wrote itself from memory (see
    ``p12_codec.legacy_items``), cryptography decrypts the host's bytes."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        verified = None
        if endpoint.type == "p12":
            data = connection.read_file(endpoint.options.path)  # the host's file (the write forgot the old)
            opened = pkcs12.load_pkcs12(data, password.encode("utf-8"))
            verified = data
            _check_opened(opened, bundle)
        loaded = load(endpoint, connection, password, authenticated=verified)  # the same bytes, from the read
        reread = loaded.store
        if reread.format == "pkcs12" and loaded.data != verified:  # (a jks endpoint's PKCS#12, or changed since)
            pkcs12.load_pkcs12(loaded.data, password.encode("utf-8"))
    except (KeystoreError, ValueError) as exc:
        raise OperationError(f"the written file does not read back: {exc}") from None
    for alias in written:
        entry = reread.find(alias)
        if not isinstance(entry, KeyEntry) or fingerprint(entry.leaf) != bundle.fingerprint:
            raise OperationError(f"the written file does not hold entry {alias!r} with the new certificate")
    missing = sorted(set(a.casefold() for a in aliases) - set(a.casefold() for a in reread.aliases()))
    if missing:
        raise OperationError(f"the written file lost entries: {', '.join(missing)}")


def _check_opened(opened: pkcs12.PKCS12KeyAndCertificates, bundle: CertificateBundle) -> None:
    """cryptography's reading of the written file holds the new certificate; when that is the
    certificate it matched a key to, the key is the bundle's."""
    found = [c.certificate for c in (opened.cert, *opened.additional_certs) if c is not None]
    if not any(fingerprint(c) == bundle.fingerprint for c in found):
        raise OperationError("the written file does not read back with the new certificate (cryptography's reader)")
    if opened.cert is not None and fingerprint(opened.cert.certificate) == bundle.fingerprint \
            and (opened.key is None or not key_matches(opened.cert.certificate, opened.key)):
        raise OperationError("the written file does not read back with the new certificate's key")


def _install_pem(
    endpoint: Endpoint, connection: Connection, bundle: CertificateBundle, loaded: Loaded, dry_run: bool, alias: str
) -> InstallResult:
    from . import pem_codec

    opts = endpoint.options
    content = loaded.store.layout["content"]
    password = option_secret(opts, "key_password")
    if content.key_encrypted:
        pem_codec.load_key(content, password)  # wrong or missing --key_password: refuse before writing
    separate = bool(opts.key_path)
    cert_data, key_data = pem_codec.render(
        content, (bundle.leaf, *bundle.chain), bundle.key, password=password, separate_key=separate
    )
    node = connection.path.basename(opts.path)
    with Transaction(connection, dry_run=dry_run, label=f"install into {opts.path}") as tx:
        action = "replace-entry" if loaded.store.entries else "add-entry"
        tx.step(action, f"{opts.path}", f"{bundle.subject}, SHA-256 {bundle.fingerprint[:16]}...")
        if separate:
            # a new key file is created 0600; an existing one keeps its mode (e.g. 0640 root:ssl-cert)
            tx.write(opts.key_path, key_data, mode=None if connection.exists(opts.key_path) else 0o600,
                     detail="private key")
        # a file that gains a private key it did not hold is written 0600; otherwise its mode is kept
        gains_key = not separate and content.key_block is None
        tx.write(opts.path, cert_data, mode=0o600 if gains_key else None, base=loaded.data,
                 detail="certificate and chain" + ("" if separate else " and private key"))
        if not dry_run:
            reread = load(endpoint, connection)
            got = reread.store.entries[0].leaf if reread.store.entries else None
            new_content = reread.store.layout["content"]
            if got is None or fingerprint(got) != bundle.fingerprint or new_content.key_block is None:
                raise OperationError(f"{opts.path} does not read back with the new certificate and key")
            if not key_matches(got, pem_codec.load_key(new_content, password)):
                raise OperationError(f"{opts.path}: the written key does not read back with the certificate")
            tx.messages.append(f"wrote {opts.path}" + (f" and {opts.key_path}" if separate else ""))
    return _after(endpoint, connection, tx, [alias], [node])


def _after(endpoint: Endpoint, connection: Connection, tx: Transaction, aliases: list[str],
           nodes: list[str]) -> InstallResult:
    """Run the install script once per written entry (after the commit) and build the result."""
    script = endpoint.options.install_script
    if tx.dry_run:
        if script:
            tx.plan.extend(_plan_run(script, a) for a in aliases)
        return tx.result(nodes=tuple(nodes), alias=aliases[0])
    held = ", ".join(repr(a) for a in aliases)
    result = tx.result(nodes=tuple(nodes), alias=aliases[0], verified=True,
                       verified_by=f"re-reading {endpoint.options.path}: "
                                   f"entr{'y' if len(aliases) == 1 else 'ies'} {held} "
                                   f"hold{'s' if len(aliases) == 1 else ''} the new certificate")
    if not script:
        return result
    messages = list(result.messages)
    for alias in aliases:
        ran = scripts.run(endpoint, connection, script, [alias], "--install_script")
        if not ran.ok:
            raise InstallScriptFailed(
                f"{connection.host}: the keystore {endpoint.options.path} was updated (entr"
                f"{'y' if len(aliases) == 1 else 'ies'} {held}) but the "
                f"install script {script} exited {ran.exit_code}: {scripts.tail(ran)}",
                result=attrs.evolve(result, messages=tuple(messages)),
                host=connection.host,
            )
        messages.append(f"install script {script} exited 0" + (f" (alias {alias!r})" if len(aliases) > 1 else ""))
    return attrs.evolve(result, messages=tuple(messages))


def _plan_run(script: str, alias: str) -> PlanStep:
    return PlanStep("run", shlex.join([script, alias]), "install script, argv: [script, alias]")
