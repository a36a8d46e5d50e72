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
test fail (after nothing was changed by that call).
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
from tlsgate_testing.winhost import PSError, SimulatedWindowsHost

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
    info: str  # bindingInformation, "ip:port:host"
    ssl_flags: int = 0

    @property
    def parts(self) -> tuple[str, int, str]:
        ip, rest = self.info.split(":", 1)
        port, _, host = rest.partition(":")
        return ip, int(port), host

    def http_sys_key(self) -> str:
        ip, port, host = self.parts
        if self.ssl_flags & 1:
            return f"hostnameport={host.lower()}:{port}"
        return f"ipport={'0.0.0.0' if ip in ('*', '') else ip}:{port}"


@attrs.define
class SimSite:
    name: str
    id: int
    state: str = "Started"
    bindings: list[SimBinding] = attrs.field(factory=list)


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
    faults: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    counters: dict[str, int] = attrs.field(factory=dict)
    restarts: int = 0
    version: str = "10.0"
    build: int = 20348
    admin: bool = True
    webadministration: bool = True

    # -- building a test scene ----------------------------------------------------------------
    def add_site(self, name: str, *bindings: tuple[str, str] | tuple[str, str, int], state: str = "Started") -> SimSite:
        site = SimSite(name, len(self.sites) + 1, state,
                       [SimBinding(b[0], b[1], b[2] if len(b) > 2 else 0) for b in bindings])  # type: ignore[misc]
        self.sites.append(site)
        return site

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

    def fail(self, template: str, *, on_call: int = 1, message: str = "simulated failure", exit_code: int = 1) -> None:
        """Make call number ``on_call`` (counted from now) of ``template`` fail before it acts."""
        self.faults[template] = {"on_call": self.counters.get(template, 0) + on_call, "message": message,
                                 "exit": exit_code}

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
        if b.protocol != "https":
            return "", ""
        entry = self.http_sys.get(b.http_sys_key())
        return (entry["hash"], entry["store"]) if entry else ("", "")

    def bindings_view(self) -> dict[tuple[str, str, str], str]:
        """(site, protocol, binding information) -> bound thumbprint ('' for none)."""
        return {(s.name, b.protocol, b.info): self.bound(b)[0] for s in self.sites for b in s.bindings}

    def store_view(self) -> dict[str, set[str]]:
        return {name: set(certs) for name, certs in self.stores.items()}

    # -- persistence --------------------------------------------------------------------------
    def save(self, host: Any) -> None:  # a SimulatedWindowsHost, or the ssh_windows host (same seed/read)
        host.seed(STATE_PATH, json.dumps(attrs.asdict(self)).encode())

    @classmethod
    def load(cls, host: Any) -> IISSim:
        raw = json.loads(host.read(STATE_PATH))
        raw["sites"] = [SimSite(s["name"], s["id"], s["state"], [SimBinding(**b) for b in s["bindings"]])
                        for s in raw["sites"]]
        raw["stores"] = {k: {t: SimCert(**c) for t, c in v.items()} for k, v in raw["stores"].items()}
        return cls(**raw)


# -- the template handlers ------------------------------------------------------------------------
def _out_json(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode("utf-8")).decode()


def _webadmin(sim: IISSim) -> None:
    if not sim.webadministration:
        raise PSError("The WebAdministration module is not installed (IIS or its management scripts and tools "
                      "are missing).", scripts.EXIT_NO_WEBADMINISTRATION)


def _discover(host: SimulatedWindowsHost, sim: IISSim, p: Any) -> str:
    _webadmin(sim)
    sites, certs = [], {}
    for s in sim.sites:
        bs = []
        for b in s.bindings:
            h, st = sim.bound(b)
            if h and h not in certs and h in sim.stores.get(st, {}):
                c = sim.stores[st][h]
                certs[h] = {"der": c.der, "hasKey": c.has_key, "store": st}
            bs.append({"protocol": b.protocol, "bindingInformation": b.info, "sslFlags": b.ssl_flags,
                       "certificateHash": h, "certificateStoreName": st})
        sites.append({"name": s.name, "id": s.id, "state": s.state, "bindings": bs})
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
    _webadmin(sim)
    site = sim.site(p["site"])
    if site is None:
        raise PSError(f"Cannot find a site named {p['site']}.", scripts.EXIT_NO_SUCH_BINDING)
    try:
        b = sim.binding(p["site"], p["binding"])
    except KeyError:
        raise PSError(f"Site {p['site']} has no https binding {p['binding']}.", scripts.EXIT_NO_SUCH_BINDING) from None
    path = f"Cert:\\LocalMachine\\{p['store']}\\{p['thumbprint']}"
    cert = sim.stores.get(p["store"], {}).get(p["thumbprint"])
    if cert is None:
        raise PSError(f"Cannot find path '{path}' because it does not exist.", scripts.EXIT_NO_SUCH_CERTIFICATE)
    if not cert.has_key:
        raise PSError(f"The certificate {p['thumbprint']} has no private key.", scripts.EXIT_NO_SUCH_CERTIFICATE)
    sim.http_sys[b.http_sys_key()] = {"hash": p["thumbprint"], "store": p["store"]}


def _unbind(host: SimulatedWindowsHost, sim: IISSim, p: Any) -> None:
    _webadmin(sim)
    key = f"hostnameport={str(p['host']).lower()}:{p['port']}" if p["sni"] else f"ipport={p['ip']}:{p['port']}"
    sim.http_sys.pop(key, None)


def _remove_certs(host: SimulatedWindowsHost, sim: IISSim, p: Any) -> str:
    _webadmin(sim)
    used = {e["hash"] for e in sim.http_sys.values()}
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
    _webadmin(sim)
    sim.restarts += 1
    host.services["W3SVC"] = "Running"
    sites = [{"name": s.name, "before": s.state, "after": s.state} for s in sim.sites]
    return _out_json({"service": "Running", "sites": sites})


HANDLERS = {
    "iis-discover": _discover,
    "iis-import-chain": _import_chain,
    "iis-import-pfx": _import_pfx,
    "iis-bind": _bind,
    "iis-unbind": _unbind,
    "iis-remove-certs": _remove_certs,
    "iis-restart": _restart,
}


def _handler(name: str) -> Any:
    def run(host: SimulatedWindowsHost, params: Any) -> Any:
        sim = IISSim.load(host)
        sim.counters[name] = sim.counters.get(name, 0) + 1
        fault = sim.faults.get(name)
        if fault and sim.counters[name] == fault["on_call"]:
            sim.save(host)
            raise PSError(fault["message"], fault["exit"])
        try:
            return HANDLERS[name](host, sim, params)
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
