"""A simulated IIS 10 behind the simulated Windows host: what the ``iis-*`` templates would find and
do on a real server, held as an in-memory model that is saved as JSON in the host's file system
(so the ssh_windows shim, which runs each command in a new process, sees the same IIS).

The model: sites with bindings (protocol, ``ip:port:host`` binding information, sslFlags); the
LocalMachine certificate stores (``My``, ``CA``, ``WebHosting``) keyed by SHA-1 thumbprint; and
HTTP.sys' certificate table, keyed ``ipport=<ip>:<port>`` for IP-based bindings (shared by every
non-SNI binding on that address) and ``hostnameport=<host>:<port>`` for SNI bindings. A binding's
``certificateHash`` is read from that table, as IIS does.

Realism kept on purpose: the uploaded PFX is parsed with cryptography using the password from
``$P`` (a wrong one fails with Import-PfxCertificate's own message), thumbprints are real SHA-1s
of the DER, binding to a thumbprint not in the store fails like ``Get-Item Cert:\\...`` does, and
every handler works on the parameters only (the template text is checked by the host).

Fault injection: ``sim.fail("iis-bind", on_call=2, message=...)`` makes the 2nd ``iis-bind`` of the
test fail (after nothing was changed by that call); ``mode="ignore"`` makes it report success and
change nothing (a host that did not apply a change).

Real IIS state it models, each from Microsoft's documentation or a public issue (see the
comments at each): FTP-only sites whose ``State`` throws; net.tcp / net.pipe / msmq.formatname /
ftp bindings; HTTP.sys entries of other applications (the WinRM 5986 listener, an entry without
a store name that breaks ``IIS:\\SslBindings`` enumeration, ``ccs=443``, ``[::]:443``); IPv6
bindings; a binding update in place that fails with 0x80070520 and detaches the certificate;
ConstrainedLanguage hosts; SysWOW64 PowerShell. The handlers run Python, not PowerShell, so
where real IIS behaves differently for different scripts, the handler looks at *what the
template does* (:func:`_does`: e.g. whether it sets ``CertificateHash`` on the existing binding
or replaces the binding) and answers as IIS would to that script. Failures come back as the
error records PowerShell writes (:class:`tlsgate_testing.winhost.PSError` with ``error_id``).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from tlsgate_iis import scripts
from tlsgate_testing.winhost import PSError, PSResult, SimulatedWindowsHost

STATE_PATH = "C:\\Windows\\System32\\inetsrv\\config\\tlsgate-sim-iis.json"
TEMP_DIR = "C:\\Windows\\Temp"
WRONG_PFX_PASSWORD = (
    "The PFX file you are trying to import requires either a different password or membership in an Active "
    "Directory principal to which it is protected."
)


def thumbprint_of(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303


@attrs.define
class SimBinding:
    protocol: str
    info: str  # bindingInformation: "ip:port:host" for http/https ("[v6]:port:host" for IPv6)
    ssl_flags: int = 0
    #: The binding element cannot be read (a corrupt entry, an unknown protocol's attributes):
    #: reading it throws this COMException message (win-acme #697: "one of your IIS websites is
    #: of an unrecognised type"; the getter throws like any Microsoft.Web.Administration element).
    read_error: str = ""

    @property
    def parts(self) -> tuple[str, int, str]:
        """(ip, port, host); the IP keeps IPv6 brackets (``[2001:db8::1]:443:``: an IPv6 address
        has colons, so splitting at the first one is wrong; ansible community.windows #544 is the
        same mistake in win_iis_webbinding). Only for http/https bindings: net.tcp
        ("808:*"), net.pipe ("*"), msmq.formatname ("localhost") and ftp have other formats
        (Microsoft Learn, "Bindings <bindings>" of system.applicationHost/sites)."""
        if self.info.startswith("["):
            close = self.info.index("]")
            ip, rest = self.info[: close + 1], self.info[close + 2 :]
        else:
            ip, _, rest = self.info.partition(":")
        port, _, host = rest.partition(":")
        return ip, int(port), host

    def http_sys_key(self) -> str:
        """The HTTP.sys entry, as ``netsh http show sslcert`` names it (IPv6 in brackets)."""
        ip, port, host = self.parts
        if self.ssl_flags & 1:
            return f"hostnameport={host.lower()}:{port}"
        return f"ipport={'0.0.0.0' if ip in ('*', '', '0.0.0.0') else ip}:{port}"


@attrs.define
class SimSite:
    name: str
    id: int
    state: str = "Started"
    bindings: list[SimBinding] = attrs.field(factory=list)
    #: Reading ``State`` throws this (an FTP-only site: "The object identifier does not represent a
    #: valid object. (Exception from HRESULT: 0x800710D8)", win-acme #539, MicrosoftDocs/iis-docs #551).
    state_error: str = ""


@attrs.define
class SimCert:
    der: str  # base64
    has_key: bool = False
    key_pem: str = ""  # kept so that the simulated HTTP.sys can serve the certificate


@attrs.define
class IISSim:
    sites: list[SimSite] = attrs.field(factory=list)
    stores: dict[str, dict[str, SimCert]] = attrs.field(factory=lambda: {"My": {}, "CA": {}, "WebHosting": {}})
    http_sys: dict[str, dict[str, str]] = attrs.field(factory=dict)
    faults: dict[str, list[dict[str, Any]]] = attrs.field(factory=dict)
    counters: dict[str, int] = attrs.field(factory=dict)
    restarts: int = 0
    version: str = "10.0"
    build: int = 20348
    admin: bool = True
    webadministration: bool = True
    #: Setting CertificateHash on an existing binding and committing fails with 0x80070520 and
    #: leaves the binding without its certificate (win-acme #371, #386; Certify #308).
    update_in_place_fails: bool = False
    #: $ExecutionContext.SessionState.LanguageMode ("ConstrainedLanguage" under AppLocker / WDAC).
    language_mode: str = "FullLanguage"

    # -- building a test scene ----------------------------------------------------------------
    def add_site(self, name: str, *bindings: tuple[str, str] | tuple[str, str, int], state: str = "Started",
                 state_error: str = "") -> SimSite:
        site = SimSite(name, len(self.sites) + 1, state,
                       [SimBinding(b[0], b[1], b[2] if len(b) > 2 else 0) for b in bindings],  # type: ignore[misc]
                       state_error)
        self.sites.append(site)
        return site

    def add_ftp_site(self, name: str, info: str = "*:21:") -> SimSite:
        """An FTP-only site: IIS reports no State for it, the getter throws 0x800710D8."""
        return self.add_site(name, ("ftp", info), state="", state_error=FTP_STATE_ERROR)

    def add_foreign_http_sys_entries(self, thumb: str) -> None:
        """HTTP.sys entries other applications registered (``netsh http show sslcert`` shows them,
        no IIS binding has them): the WinRM https listener (``ipport=0.0.0.0:5986``, Microsoft Learn
        "How to configure WinRM for HTTPS"), an entry added by ``netsh http add sslcert`` without
        ``certstorename`` (no store name: what makes ``IIS:\\SslBindings`` enumeration fail with
        error 234, OctopusDeploy/Issues #554, #876), a Centralized Certificate Store entry
        (``ccs=443``) and an IPv6 wildcard entry (``ipport=[::]:443``)."""
        self.http_sys["ipport=0.0.0.0:5986"] = {"hash": thumb, "store": "My", "app": "WinRM"}
        self.http_sys["ipport=0.0.0.0:44300"] = {"hash": thumb, "store": "", "app": "netsh without certstorename"}
        self.http_sys["ccs=443"] = {"hash": "", "store": "", "app": "Centralized Certificate Store"}
        self.http_sys["ipport=[::]:443"] = {"hash": thumb, "store": "My", "app": "another application"}

    def add_certificate(self, der: bytes, store: str = "My", *, has_key: bool = True, key: Any = None) -> str:
        thumb = thumbprint_of(der)
        key_pem = "" if key is None else key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        self.stores.setdefault(store, {})[thumb] = SimCert(base64.b64encode(der).decode(), has_key or bool(key_pem),
                                                           key_pem)
        return thumb

    def bind(self, site: str, info: str, thumb: str, store: str = "My") -> None:
        b = self.binding(site, info)
        self.http_sys[b.http_sys_key()] = {"hash": thumb, "store": store}

    def fail(self, template: str, *, on_call: int = 1, message: str = "simulated failure", exit_code: int = 1,
             mode: str = "fail", error_id: str | None = None, warnings: tuple[str, ...] = ()) -> None:
        """Make call number ``on_call`` (counted from now) of ``template`` fail before it acts
        (``mode="ignore"``: succeed without acting). Without ``error_id`` the message is raw text
        the template writes itself; with it, a PowerShell error record (``FullyQualifiedErrorId``)."""
        self.faults.setdefault(template, []).append({
            "on_call": self.counters.get(template, 0) + on_call, "message": message, "exit": exit_code,
            "mode": mode, "error_id": error_id, "warnings": list(warnings)})

    # -- queries ------------------------------------------------------------------------------
    def site(self, name: str) -> SimSite | None:
        return next((s for s in self.sites if s.name.casefold() == name.casefold()), None)

    def binding(self, site: str, info: str, protocol: str = "https") -> SimBinding:
        s = self.site(site)
        hits = [b for b in (s.bindings if s else []) if b.protocol == protocol and b.info.casefold() == info.casefold()]
        if len(hits) != 1:
            raise KeyError((site, info))
        return hits[0]

    def bound(self, b: SimBinding) -> tuple[str, str]:
        if b.protocol != "https" or b.read_error:
            return "", ""
        entry = self.http_sys.get(b.http_sys_key())
        return (entry["hash"], entry["store"]) if entry else ("", "")

    def bindings_view(self) -> dict[tuple[str, str, str], str]:
        """(site, protocol, binding information) -> bound thumbprint ('' for none)."""
        return {(s.name, b.protocol, b.info): self.bound(b)[0] for s in self.sites for b in s.bindings}

    def attributes_view(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """(site, protocol, binding information) -> (sslFlags, position in the site's bindings)."""
        return {(s.name, b.protocol, b.info): (b.ssl_flags, i) for s in self.sites for i, b in enumerate(s.bindings)}

    def store_view(self) -> dict[str, set[str]]:
        return {name: set(certs) for name, certs in self.stores.items()}

    # -- persistence --------------------------------------------------------------------------
    def save(self, host: Any) -> None:  # a SimulatedWindowsHost, or the ssh_windows host (same seed/read)
        host.seed(STATE_PATH, json.dumps(attrs.asdict(self)).encode())

    @classmethod
    def load(cls, host: Any) -> IISSim:
        raw = json.loads(host.read(STATE_PATH))
        raw["sites"] = [SimSite(s["name"], s["id"], s["state"], [SimBinding(**b) for b in s["bindings"]],
                                s.get("state_error", "")) for s in raw["sites"]]
        raw["stores"] = {k: {t: SimCert(**c) for t, c in v.items()} for k, v in raw["stores"].items()}
        return cls(**raw)


# -- what real PowerShell / IIS say --------------------------------------------------------------
FTP_STATE_ERROR = ("The object identifier does not represent a valid object. (Exception from HRESULT: "
                   "0x800710D8)")
LOGON_SESSION_ERROR = ('Exception calling "CommitChanges" with "0" argument(s): "A specified logon session does '
                       'not exist. It may already have been terminated. (Exception from HRESULT: 0x80070520)"')
ENUMERATE_234 = "Failed to enumerate SSL bindings, error code 234."
#: 32-bit PowerShell (SysWOW64) cannot create IIS' 64-bit COM classes (WebAdministration's
#: provider, Microsoft.Web.Administration): REGDB_E_CLASSNOTREG.
WOW64_ERROR = ("Retrieving the COM class factory for component with CLSID {688EEEE5-6A7E-422F-B2E1-6AF00DC944A6} "
               "failed due to the following error: 80040154 Class not registered (Exception from HRESULT: "
               "0x80040154 (REGDB_E_CLASSNOTREG)).")


def _script(host: SimulatedWindowsHost) -> str:
    """The template text of the call being handled (the host records it before the handler)."""
    return host.calls[-1].script if host.calls else ""


def _does(host: SimulatedWindowsHost, *fragments: str) -> bool:
    """Whether the running template contains every fragment: how the handler tells which of two
    ways of doing a thing the script takes, where real IIS answers them differently."""
    script = _script(host)
    return all(f in script for f in fragments)


def _out_json(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode("utf-8")).decode()


def _language(host: SimulatedWindowsHost, sim: IISSim) -> None:
    """A ConstrainedLanguage host (about_Language_Modes: only core types may be created, Add-Type
    is not permitted): a template that checks the mode first stops with its own message; one that
    does not fails at its first Add-Type or New-Object, with PowerShell's error record."""
    if sim.language_mode == "FullLanguage":
        return
    if _does(host, "$ExecutionContext.SessionState.LanguageMode"):
        message = (f"{getattr(scripts, 'NOT_FULL_LANGUAGE', '')} {sim.language_mode} mode (AppLocker or WDAC policy); the IIS "
                   "driver needs FullLanguage (Add-Type, New-Object).")
        raise _Stdout(message + "\r\n", getattr(scripts, "EXIT_NOT_FULL_LANGUAGE", 6))
    script = _script(host)
    add_type, new_object = script.find("Add-Type"), script.find("New-Object")
    if add_type >= 0 and (new_object < 0 or add_type < new_object):
        raise PSError("Cannot add type. Definition of new types is not supported in this language mode.",
                      error_id="CannotDefineNewType,Microsoft.PowerShell.Commands.AddTypeCommand",
                      category="PermissionDenied: (:) [Add-Type], PSNotSupportedException",
                      line="Add-Type -Path (Join-Path $env:windir 'System32\\inetsrv\\Microsoft.Web.Administration.dll')")
    if new_object >= 0:
        raise PSError("Cannot create type. Only core types are supported in this language mode.",
                      error_id="CannotCreateTypeConstrainedLanguage,Microsoft.PowerShell.Commands.NewObjectCommand",
                      category="PermissionDenied: (:) [New-Object], PSNotSupportedException",
                      line="$me = New-Object Security.Principal.WindowsPrincipal(...)")


class _Stdout(Exception):
    """A template's own message on stdout with an exit code (the language-mode check)."""

    def __init__(self, text: str, code: int) -> None:
        super().__init__(text)
        self.text, self.code = text, code


def _webadmin(sim: IISSim, host: SimulatedWindowsHost | None = None) -> None:
    if not sim.webadministration:
        raise PSError("The WebAdministration module is not installed (IIS or its management scripts and tools "
                      "are missing).", scripts.EXIT_NO_WEBADMINISTRATION)
    if host is not None and host.bitness == 32:
        raise PSError(WOW64_ERROR, error_id="System.Runtime.InteropServices.COMException",
                      category="NotSpecified: (:) [Import-Module], COMException", line="Import-Module WebAdministration")


def _discover(host: SimulatedWindowsHost, sim: IISSim, p: Any) -> str:
    _webadmin(sim, host)
    guards_state = _does(host, "try { $site.state = [string]$s.state }")
    https_only = _does(host, "if ($e.protocol -eq 'https')")
    guards_binding = _does(host, "} catch { $e.error = $_.Exception.Message }")
    sites, certs = [], {}
    for s in sim.sites:
        site: dict[str, Any] = {"name": s.name, "id": s.id, "state": s.state}
        if s.state_error:
            if not guards_state:
                raise PSError(s.state_error, error_id="System.Runtime.InteropServices.COMException",
                              category="OperationStopped: (:) [], COMException", line="$s.state")
            site["state"], site["stateError"] = "", s.state_error
        bs = []
        for b in s.bindings:
            reads_cert = b.protocol == "https" or not https_only
            if b.read_error and (reads_cert or b.protocol == "https"):
                if not guards_binding:
                    raise PSError(b.read_error, error_id="System.Runtime.InteropServices.COMException",
                                  category="OperationStopped: (:) [], COMException", line="$b.certificateHash")
                bs.append({"protocol": b.protocol, "bindingInformation": b.info, "error": b.read_error})
                continue
            e: dict[str, Any] = {"protocol": b.protocol, "bindingInformation": b.info}
            if reads_cert:
                h, st = sim.bound(b)
                if h and h not in certs and h in sim.stores.get(st, {}):
                    c = sim.stores[st][h]
                    certs[h] = {"der": c.der, "hasKey": c.has_key, "store": st}
                e.update({"sslFlags": b.ssl_flags, "certificateHash": h, "certificateStoreName": st})
            bs.append(e)
        site["bindings"] = bs
        sites.append(site)
    _language(host, sim)  # the first New-Object of the old template comes after the site loop
    return _out_json({"sites": sites, "certs": certs, "version": sim.version, "admin": sim.admin,
                      "temp": TEMP_DIR, "build": sim.build})


def _import_chain(host: SimulatedWindowsHost, sim: IISSim, p: Any) -> str:
    try:
        found = pkcs7.load_der_pkcs7_certificates(host.read(p["path"]))
    except ValueError:
        raise PSError("Cannot find the requested object. 0x80092004 (-2146885628 CRYPT_E_NOT_FOUND)") from None
    added = []
    for cert in found:
        der = cert.public_bytes(serialization.Encoding.DER)
        thumb = thumbprint_of(der)
        if thumb not in sim.stores["CA"]:
            added.append(thumb)
        sim.add_certificate(der, "CA", has_key=False)
    return _out_json(added)


#: DER of the OIDs that mark a "modern" PFX: PBES2 (1.2.840.113549.1.5.13) and SHA-256 (the MAC).
_PBES2_OID = bytes.fromhex("06092a864886f70d01050d")
_SHA256_OID = bytes.fromhex("0609608648016503040201")
#: Windows 10 / Server 2016 builds before 1709 (16299) cannot import AES-256/SHA-256 PFX files.
FIRST_BUILD_WITH_AES_PFX = 16299


def _import_pfx(host: SimulatedWindowsHost, sim: IISSim, p: Any) -> str:
    existed = p["thumbprint"] in sim.stores["My"]
    data = host.read(p["path"])
    if sim.build < FIRST_BUILD_WITH_AES_PFX and (_PBES2_OID in data or _SHA256_OID in data):
        # What an old build reports is recalled, not verified: the import fails as if the password were wrong.
        raise PSError(WRONG_PFX_PASSWORD)
    try:
        key, leaf, extra = pkcs12.load_key_and_certificates(data, str(p["password"]).encode())
    except ValueError:
        raise PSError(WRONG_PFX_PASSWORD) from None
    # Import-PfxCertificate puts every certificate of the file into the target store.
    for cert in extra:
        sim.add_certificate(cert.public_bytes(serialization.Encoding.DER), "My", has_key=False)
    if leaf is None or key is None:
        raise PSError("The PFX held no certificate with a private key.", scripts.EXIT_NO_SUCH_CERTIFICATE)
    thumb = sim.add_certificate(leaf.public_bytes(serialization.Encoding.DER), "My", key=key)
    return _out_json({"thumbprint": thumb, "existed": existed})


def _bind(host: SimulatedWindowsHost, sim: IISSim, p: Any) -> None:
    _webadmin(sim, host)
    site = sim.site(p["site"])
    if site is None:
        raise PSError(f"Cannot find a site named {p['site']}.", scripts.EXIT_NO_SUCH_BINDING)
    try:
        b = sim.binding(p["site"], p["binding"])
    except KeyError:
        raise PSError(f"Site {p['site']} has no https binding {p['binding']}.", scripts.EXIT_NO_SUCH_BINDING) from None
    thumb = str(p.get("thumbprint") or "")
    if thumb:
        path = f"Cert:\\LocalMachine\\{p['store']}\\{thumb}"
        cert = sim.stores.get(p["store"], {}).get(thumb)
        if cert is None:
            raise PSError(f"Cannot find path '{path}' because it does not exist.", scripts.EXIT_NO_SUCH_CERTIFICATE)
        if not cert.has_key:
            raise PSError(f"The certificate {thumb} has no private key.", scripts.EXIT_NO_SUCH_CERTIFICATE)
    old_key = b.http_sys_key()
    if _does(host, ".Bindings.Remove(", ".Bindings.CreateElement("):
        # Replace: a new element with the attributes the script copies (all of them when it copies
        # every attribute, as win-acme #371's fix does; else protocol and bindingInformation only).
        copies = _does(host, "$new.SetAttributeValue($a.Name, $a.Value)")
        new = SimBinding(b.protocol, b.info, b.ssl_flags if copies else 0)
        at = site.bindings.index(b) if _does(host, ".AddAt(") else len(site.bindings) - 1
        site.bindings.remove(b)
        site.bindings.insert(at, new)
        # Removing an https binding removes its HTTP.sys entry unless another binding still uses it.
        if not any(o.protocol == "https" and o.http_sys_key() == old_key for s in sim.sites for o in s.bindings
                   if o is not new):
            sim.http_sys.pop(old_key, None)
        if thumb:
            sim.http_sys[new.http_sys_key()] = {"hash": thumb, "store": p["store"]}
        elif _does(host, "netsh http delete sslcert") and p.get("httpsys") in sim.http_sys:
            sim.http_sys.pop(p["httpsys"])  # deleted by its exact key
        return
    # Update in place (CertificateHash set on the existing binding).
    if sim.update_in_place_fails:
        # As reported: the commit deletes the old SSL binding, fails to create the new one, and the
        # binding is left without a certificate (win-acme #371, #386, #58; Certify #222, #308).
        sim.http_sys.pop(old_key, None)
        raise PSError(LOGON_SESSION_ERROR, error_id="COMException",
                      category="NotSpecified: (:) [], MethodInvocationException", line="$sm.CommitChanges()")
    sim.http_sys[old_key] = {"hash": thumb, "store": p["store"]}


def _unbind(host: SimulatedWindowsHost, sim: IISSim, p: Any) -> None:
    if _does(host, ".Bindings.Remove("):  # the replace without a certificate, then netsh by exact key
        _bind(host, sim, {**p, "thumbprint": ""})
        return
    # The first iis-unbind (Remove-Item IIS:\SslBindings\<key>): the provider fails as soon as an
    # entry without a store name exists (kept so that the old template meets the real failure).
    _webadmin(sim, host)
    _enumerate_ssl_bindings(host, sim)
    key = f"hostnameport={str(p['host']).lower()}:{p['port']}" if p["sni"] else f"ipport={p['ip']}:{p['port']}"
    sim.http_sys.pop(key, None)


def _enumerate_ssl_bindings(host: SimulatedWindowsHost, sim: IISSim) -> None:
    """``IIS:\\SslBindings`` fails for the whole host when any HTTP.sys entry has no store name
    (OctopusDeploy/Issues #554 and #876: "Failed to enumerate SSL bindings, error code 234")."""
    if _does(host, "IIS:\\SslBindings") and any(e.get("hash") and not e.get("store") for e in sim.http_sys.values()):
        raise PSError(f"Get-ChildItem : {ENUMERATE_234}",
                      error_id="System.Runtime.InteropServices.COMException,Microsoft.PowerShell.Commands.GetChildItemCommand",
                      category="NotSpecified: (:) [Get-ChildItem], COMException",
                      line="Get-ChildItem -LiteralPath 'IIS:\\SslBindings'")


def _remove_certs(host: SimulatedWindowsHost, sim: IISSim, p: Any) -> str:
    _webadmin(sim, host)
    _enumerate_ssl_bindings(host, sim)
    # the IIS bindings' hashes, and (netsh http show sslcert / the provider) every HTTP.sys entry's
    used = {e["hash"] for e in sim.http_sys.values() if e.get("hash")}
    removed, kept = [], []
    store = sim.stores.get(p["store"], {})
    for t in p["thumbprints"]:
        if p["store"] == "My" and t in used:
            kept.append(t)
        elif t in store:
            del store[t]
            removed.append(t)
    return _out_json({"removed": removed, "kept": kept})


def _restart(host: SimulatedWindowsHost, sim: IISSim, p: Any) -> str:
    _webadmin(sim, host)
    sim.restarts += 1
    host.services["W3SVC"] = "Running"
    sites = [{"name": s.name, "before": s.state, "after": s.state} for s in sim.sites]
    return _out_json({"service": "Running", "sites": sites})


HANDLERS = {
    "iis-discover": _discover,
    "iis-import-chain": _import_chain,
    "iis-import-pfx": _import_pfx,
    "iis-bind": _bind,
    "iis-unbind": _unbind,  # the former template (no longer in scripts.TEMPLATES)
    "iis-remove-certs": _remove_certs,
    "iis-restart": _restart,
}


def _handler(name: str) -> Any:
    def run(host: SimulatedWindowsHost, params: Any) -> Any:
        sim = IISSim.load(host)
        sim.counters[name] = sim.counters.get(name, 0) + 1
        fault = next((f for f in sim.faults.get(name, []) if f["on_call"] == sim.counters[name]), None)
        try:
            if name != "iis-discover":  # discovery's first New-Object comes after its reads
                _language(host, sim)
            if fault:
                if fault.get("mode") == "ignore":
                    return ""
                raise PSError(fault["message"], fault["exit"], error_id=fault.get("error_id"),
                              warnings=tuple(fault.get("warnings") or ()))
            return HANDLERS[name](host, sim, params)
        except _Stdout as out:
            return PSResult(out.text, "", out.code)
        finally:
            sim.save(host)

    return run


def install_iis(host: SimulatedWindowsHost, sim: IISSim | None = None) -> IISSim:
    """Give ``host`` an IIS (the scene in ``sim``, else an empty one) and register the templates."""
    sim = sim or IISSim()
    host.fs.makedirs(TEMP_DIR)
    sim.save(host)
    register(host)
    return sim


def register(host: SimulatedWindowsHost) -> None:
    """Register the ``iis-*`` handlers (the ``winhost_plugins`` entry for the ssh_windows shim)."""
    for name, template in scripts.TEMPLATES.items():
        host.register(name, _handler(name), template=template)
    if "iis-unbind" not in scripts.TEMPLATES:  # the template text is checked only for current templates
        host.register("iis-unbind", _handler("iis-unbind"))
