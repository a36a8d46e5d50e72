"""Routes of the loopback iControl REST peer (see ``icontrol_peer``): authentication, the token
service, file transfer, and the ``/mgmt/tm`` objects the F5 driver uses."""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
from typing import Any

from icontrol_peer import DOWNLOADS, NONE, Device, F5HttpError, Token, _split, basic_user

CERTS = "/mgmt/tm/sys/file/ssl-cert"
KEYS = "/mgmt/tm/sys/file/ssl-key"
WRITE = ("POST", "PUT", "PATCH", "DELETE")


def _obj(segment: str) -> str:
    """``~Common~x.crt`` -> ``/Common/x.crt``."""
    return segment.replace("~", "/") if segment.startswith("~") else f"/Common/{segment}"


def _json(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise F5HttpError(400, "Found invalid JSON body in the request.", framework=True) from None


def handle(dev: Device, method: str, path: str, query: dict[str, str], headers: Any, raw: bytes) -> tuple[int, Any]:
    with dev.lock:
        body = None if path.startswith("/mgmt/shared/file-transfer/") else _json(raw)
        dev.log.append((method, path, body if not path.endswith("/login") else "<login>"))
        if method == "POST" and path == "/mgmt/shared/authn/login":
            _fault(dev, method, path)
            return 200, _login(dev, body)
        user = _authenticate(dev, headers, path)
        _authorize(dev, user, method, path)
        _fault(dev, method, path)
        trans = headers.get("X-F5-REST-Coordination-Id")
        if trans and method in WRITE and path.startswith("/mgmt/tm/") and not path.startswith("/mgmt/tm/transaction"):
            queue = dev.transactions.get(int(trans))
            if queue is None:
                raise F5HttpError(404, f"Transaction {trans} not found.", framework=True)
            queue.append((method, path, body))
            return 200, {**body, "transId": int(trans)}
        status, out = _route(dev, method, path, query, body, raw, headers, user)
        if method == "GET" and "$top" in query and isinstance(out, dict) and "items" in out and not dev.ignore_paging:
            _page(dev, path, query, out)
        return status, out


def _page(dev: Device, path: str, query: dict[str, str], out: dict[str, Any]) -> None:
    top, skip = int(query["$top"]), int(query.get("$skip", "0"))
    total = len(out["items"])
    out["items"] = out["items"][skip:skip + top]
    out.update(currentItemCount=len(out["items"]), itemsPerPage=top, pageIndex=skip // top + 1,
               totalItems=total, totalPages=-(-total // top))
    if skip + top < total:
        rest = "&".join(f"{k}={v}" for k, v in query.items() if k not in ("$top", "$skip"))
        out["nextLink"] = f"https://localhost{path}?$top={top}&$skip={skip + top}{'&' + rest if rest else ''}" \
                          f"&ver={dev.version}"


def _fault(dev: Device, method: str, path: str) -> None:
    for fault in dev.faults:
        if fault.times > 0 and fault.method == method and re.search(fault.pattern, path):
            fault.times -= 1
            raise F5HttpError(fault.status, fault.message, html=fault.html)


def _login(dev: Device, body: dict[str, Any]) -> dict[str, Any]:
    name, password = str(body.get("username", "")), str(body.get("password", ""))
    user = dev.users.get(name)
    if user is None or user.password != password or body.get("loginProviderName", "tmos") != "tmos":
        raise F5HttpError(401, "Authentication failed.", framework=True)
    if dev.live_tokens(name) >= dev.max_tokens:
        raise F5HttpError(400, "user has reached maximum active login tokens", framework=True)
    value = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(26))
    now = time.time()
    dev.tokens[value] = Token(name, dev.token_timeout, now + dev.token_timeout, now)
    dev.tokens_issued += 1
    return {"username": name, "loginProviderName": "tmos", "token": _token_body(dev, value)}


def _token_body(dev: Device, value: str) -> dict[str, Any]:
    tok = dev.tokens[value]
    return {"token": value, "name": value, "userName": tok.user, "authProviderName": "tmos",
            "timeout": tok.timeout, "partition": "[All]", "generation": 1,
            "lastUpdateMicros": int(tok.updated * 1e6), "expirationMicros": int(tok.expires * 1e6),
            "kind": "shared:authz:tokens:authtokenitemstate",
            "selfLink": f"https://localhost/mgmt/shared/authz/tokens/{value}"}


def _authenticate(dev: Device, headers: Any, path: str) -> str:
    token = headers.get("X-F5-Auth-Token")
    if token:
        tok = dev.tokens.get(token)
        if tok is None:
            raise F5HttpError(401, f"X-F5-Auth-Token {token} does not exist.", framework=True)
        if tok.expires <= time.time():
            raise F5HttpError(401, f"X-F5-Auth-Token {token} has expired.", framework=True)
        return tok.user
    basic = basic_user(headers)
    if basic:
        user = dev.users.get(basic[0])
        if user is None or user.password != basic[1] or user.role != "admin":
            raise F5HttpError(401, "Authentication failed.", framework=True)
        return basic[0]
    raise F5HttpError(
        401, f"Authorization failed: no user authentication header or token detected. Uri:http://localhost:8100{path} "
        "Referrer:127.0.0.1 Sender:127.0.0.1", framework=True)


def _authorize(dev: Device, user: str, method: str, path: str) -> None:
    role = dev.users[user].role
    if role == "admin" or method == "GET" or path.startswith("/mgmt/shared/authz/tokens/"):
        return
    raise F5HttpError(
        401, f"Authorization failed: user=https://localhost/mgmt/shared/authz/users/{user} "
        f"resource={path} verb={method} uri:http://localhost:8100{path} referrer:127.0.0.1 sender:127.0.0.1",
        framework=True)


def _route(dev: Device, method: str, path: str, query: dict[str, str], body: Any, raw: bytes,
           headers: Any, user: str) -> tuple[int, Any]:
    m = re.fullmatch(r"/mgmt/shared/authz/tokens/([^/]+)", path)
    if m:
        return _token(dev, method, m.group(1), body)
    m = re.fullmatch(r"/mgmt/shared/file-transfer/uploads/([^/]+)", path)
    if m and method == "POST":
        return 200, _upload(dev, m.group(1), headers.get("Content-Range") or "", raw)
    if path == "/mgmt/shared/echo-query" and method == "GET":
        return 200, {"kind": "shared:echo-query:echoqueryresponse"}
    if path in ("/mgmt/tm/sys", "/mgmt/tm/sys/") and method == "GET":
        return 200, dev.collection("tm:sys:syscollectionstate", "/mgmt/tm/sys", [
            {"reference": {"link": dev.link("/mgmt/tm/sys/config")}},
            {"reference": {"link": dev.link("/mgmt/tm/sys/version")}}])
    if path == "/mgmt/tm/sys/version" and method == "GET":
        return 200, {"kind": "tm:sys:version:versionstats", "selfLink": dev.link(path), "entries": {
            "https://localhost/mgmt/tm/sys/version/0": {"nestedStats": {"entries": {
                "Product": {"description": "BIG-IP"}, "Version": {"description": dev.version}}}}}}
    m = re.fullmatch(r"/mgmt/tm/auth/user(?:/([^/]+))?", path)
    if m and method == "GET":
        return 200, _users(dev, m.group(1))
    if path == "/mgmt/tm/auth/partition" and method == "GET":
        return 200, dev.collection("tm:auth:partition:partitioncollectionstate", path, [
            {"kind": "tm:auth:partition:partitionstate", "name": p, "fullPath": p,
             "selfLink": dev.link(f"/mgmt/tm/auth/partition/{p}")} for p in sorted(dev.partitions)])
    m = re.fullmatch(r"/mgmt/tm/sys/file/(ssl-cert|ssl-key)(?:/([^/]+))?", path)
    if m:
        return _file_objects(dev, method, m.group(1), m.group(2), body)
    m = re.fullmatch(r"/mgmt/tm/sys/crypto/(cert|key)", path)
    if m and method == "POST":
        return 200, _crypto_install(dev, m.group(1), body)
    m = re.fullmatch(r"/mgmt/tm/ltm/profile/(client-ssl|server-ssl)(?:/([^/]+))?", path)
    if m:
        return _profiles(dev, method, m.group(1), m.group(2), body)
    m = re.fullmatch(r"/mgmt/tm/ltm/virtual(?:/([^/]+)(/profiles)?)?", path)
    if m and method == "GET":
        return 200, _virtuals(dev, m.group(1), bool(m.group(2)), query)
    if path == "/mgmt/tm/sys/config" and method == "POST":
        if body.get("command") != "save":
            raise F5HttpError(400, f"Unsupported command: {body.get('command')}")
        dev.saves += 1
        return 200, {"kind": "tm:sys:config:savestate", "command": "save"}
    if path == "/mgmt/tm/util/unix-rm" and method == "POST":
        target = str(body.get("utilCmdArgs", ""))
        if target not in dev.files:
            return 200, {"kind": "tm:util:unix-rm:runstate", "command": "run", "utilCmdArgs": target,
                         "commandResult": f"/bin/rm: cannot remove '{target}': No such file or directory\n"}
        del dev.files[target]
        return 200, {"kind": "tm:util:unix-rm:runstate", "command": "run", "utilCmdArgs": target}
    m = re.fullmatch(r"/mgmt/tm/transaction(?:/(\d+))?", path)
    if m:
        return _transaction(dev, method, m.group(1), body, headers, user)
    raise F5HttpError(404, f"Public URI path not registered: {path}", framework=True)


def _token(dev: Device, method: str, value: str, body: Any) -> tuple[int, Any]:
    if value not in dev.tokens:
        raise F5HttpError(404, f"Object not found: {value}", framework=True)
    if method == "GET":
        return 200, _token_body(dev, value)
    if method == "PATCH":
        timeout = int(body.get("timeout", 1200))
        if not 0 < timeout <= 36000:
            raise F5HttpError(400, "Timeout must be between 1 and 36000 seconds", framework=True)
        tok = dev.tokens[value]
        tok.timeout, tok.updated, tok.expires = timeout, time.time(), time.time() + timeout
        return 200, _token_body(dev, value)
    if method == "DELETE":
        out = _token_body(dev, value)
        del dev.tokens[value]
        dev.tokens_deleted += 1
        return 200, out
    raise F5HttpError(405, f"Method {method} not allowed", framework=True)


def _upload(dev: Device, name: str, content_range: str, raw: bytes) -> dict[str, Any]:
    m = re.fullmatch(r"(\d+)-(\d+)/(\d+)", content_range.strip())
    if not m:
        raise F5HttpError(400, f"Content-Range header is missing or malformed: {content_range!r}", framework=True)
    start, end, total = (int(g) for g in m.groups())
    if end - start + 1 != len(raw):
        raise F5HttpError(400, f"Chunk byte count {end - start + 1} different from received buffer length {len(raw)}",
                          framework=True)
    buf = dev.uploads.setdefault(name, bytearray())
    if start == 0:
        buf.clear()
    if start != len(buf) or end >= total:
        raise F5HttpError(400, f"Invalid range {content_range}: {len(buf)} bytes received so far", framework=True)
    buf.extend(raw)
    local = f"{DOWNLOADS}/{name}"
    if len(buf) == total:
        dev.files[local] = bytes(buf)
        for pattern, replacement in dev.corrupt_uploads.items():
            if re.search(pattern, name):
                dev.files[local] = replacement
        del dev.uploads[name]
    return {"remainingByteCount": total - len(buf) if name in dev.uploads else 0, "usedChunks": {"0": len(raw)},
            "totalByteCount": total, "localFilePath": local, "temporaryFilePath": f"{local}.tmp",
            "generation": 0, "lastUpdateMicros": int(time.time() * 1e6)}


def _users(dev: Device, name: str | None) -> dict[str, Any]:
    def item(n: str) -> dict[str, Any]:
        u = dev.users[n]
        return {"kind": "tm:auth:user:userstate", "name": n, "fullPath": n, "generation": 1,
                "selfLink": dev.link(f"/mgmt/tm/auth/user/{n}"), "description": n, "shell": u.shell,
                "partitionAccess": [{"name": "all-partitions", "role": u.role,
                                     "nameReference": {"link": dev.link("/mgmt/tm/auth/partition/all-partitions")}}]}
    local = sorted(n for n, u in dev.users.items() if not u.remote)
    if name is None:
        return dev.collection("tm:auth:user:usercollectionstate", "/mgmt/tm/auth/user", [item(n) for n in local])
    if name not in local:
        raise F5HttpError(404, f"01020036:3: The requested user role partition ({name}) was not found.")
    return item(name)


def _file_objects(dev: Device, method: str, kind: str, segment: str | None, body: Any) -> tuple[int, Any]:
    table = dev.certs if kind == "ssl-cert" else dev.keys
    render = dev.cert_item if kind == "ssl-cert" else dev.key_item
    label = "Certificate File" if kind == "ssl-cert" else "Certificate Key File"
    coll = f"/mgmt/tm/sys/file/{kind}"
    if segment is None:
        if method == "GET":
            return 200, dev.collection(f"tm:sys:file:{kind}:{kind}collectionstate", coll,
                                       [render(p) for p in sorted(table)])
        if method == "POST":
            full = f"/{body.get('partition', 'Common')}/{body['name']}"
            source = str(body.get("sourcePath", "")).removeprefix("file://")
            _create(dev, kind, full, source, label)
            return 200, render(full)
        raise F5HttpError(405, f"Method {method} not allowed", framework=True)
    full = _obj(segment)
    if full not in table:
        raise F5HttpError(404, f"01020036:3: The requested {label} ({full}) was not found.")
    if method == "GET":
        return 200, render(full)
    if method == "DELETE":
        users = dev.references(full)
        if users:
            raise F5HttpError(400, f"01071349:3: File object by name ({full}) is in use.")
        del table[full]
        return 200, {}
    raise F5HttpError(405, f"Method {method} not allowed", framework=True)


def _create(dev: Device, kind: str, full: str, local: str, label: str) -> None:
    part, name = _split(full)
    if part not in dev.partitions:
        raise F5HttpError(404, f"01020036:3: The requested folder (/{part}) was not found.")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", name):
        raise F5HttpError(400, f"01070022:3: The requested object name ({name}) is invalid.")
    table = dev.certs if kind == "ssl-cert" else dev.keys
    if full in table:
        raise F5HttpError(409, f"01020066:3: The requested {label} ({full}) already exists in partition {part}.")
    if local not in dev.files:
        raise F5HttpError(400, f"01070712:3: Caught Configuration Exception: Cannot open file {local}: No such file.")
    data = dev.files[local]
    try:
        if kind == "ssl-cert":
            dev.add_cert(full, data)
        else:
            dev.add_key(full, data)
    except (ValueError, TypeError):
        what = "certificate" if kind == "ssl-cert" else "key"
        raise F5HttpError(400, f"01070712:3: Values ({full}) specified for {label}: {what} could not be parsed "
                               f"from {local}.") from None


def _crypto_install(dev: Device, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("command") != "install":
        raise F5HttpError(400, f"Unsupported command: {body.get('command')}")
    name = str(body.get("name", ""))
    full = name if name.startswith("/") else f"/{body.get('partition', 'Common')}/{name}"
    local = str(body.get("from-local-file", ""))
    _create(dev, "ssl-cert" if kind == "cert" else "ssl-key", full, local,
            "Certificate File" if kind == "cert" else "Certificate Key File")
    return {"kind": f"tm:sys:crypto:{kind}:{kind}state", "command": "install", "name": name,
            "from-local-file": local}


def _profiles(dev: Device, method: str, kind: str, segment: str | None, body: Any) -> tuple[int, Any]:
    table = dev.profiles if kind == "client-ssl" else dev.server_profiles
    coll = f"/mgmt/tm/ltm/profile/{kind}"
    if segment is None:
        if method == "GET":
            return 200, dev.collection(f"tm:ltm:profile:{kind}:{kind}collectionstate", coll,
                                       [dev.profile_item(p, kind) for p in sorted(table)])
        raise F5HttpError(405, f"Method {method} not allowed", framework=True)
    full = _obj(segment)
    if full not in table:
        part = _split(full)[0]
        if part not in dev.partitions:
            raise F5HttpError(404, f"01020036:3: The requested folder (/{part}) was not found.")
        raise F5HttpError(404, f"01020036:3: The requested ClientSSL Profile ({full}) was not found.")
    if method == "GET":
        return 200, dev.profile_item(full, kind)
    if method in ("PATCH", "PUT"):
        _patch_profile(dev, table, full, body)
        return 200, dev.profile_item(full, kind)
    raise F5HttpError(405, f"Method {method} not allowed", framework=True)


def _patch_profile(dev: Device, table: dict[str, Any], full: str, body: dict[str, Any]) -> None:
    prof = table[full]
    if "certKeyChain" in body:
        entries = []
        for e in body["certKeyChain"]:
            entry = {k: v for k, v in e.items() if not k.endswith("Reference") and k != "appService"}
            entry.setdefault("chain", NONE)
            entries.append(entry)
        if not entries:
            raise F5HttpError(400, f"01070315:3: profile {full} requires a key")
        dev.check_profile_entries(full, entries)
        prof["certKeyChain"] = entries
        prof["inheritCertkeychain"] = "false"
    for field in ("serverName", "sniDefault"):
        if field in body:
            prof[field] = body[field]


def _virtuals(dev: Device, segment: str | None, profiles: bool, query: dict[str, str]) -> dict[str, Any]:
    expand = query.get("expandSubcollections") == "true"
    if segment is None:
        return dev.collection("tm:ltm:virtual:virtualcollectionstate", "/mgmt/tm/ltm/virtual",
                              [dev.virtual_item(v, expand) for v in sorted(dev.virtuals)])
    full = _obj(segment)
    if full not in dev.virtuals:
        raise F5HttpError(404, f"01020036:3: The requested Virtual Server ({full}) was not found.")
    if profiles:
        return dev.collection("tm:ltm:virtual:profiles:profilescollectionstate",
                              f"/mgmt/tm/ltm/virtual/{segment}/profiles", dev.virtual_profiles(full))
    return dev.virtual_item(full, expand)


def _transaction(dev: Device, method: str, tid: str | None, body: Any, headers: Any, user: str) -> tuple[int, Any]:
    if tid is None and method == "POST":
        new = max(dev.transactions, default=1_600_000_000_000) + 1
        dev.transactions[new] = []
        return 200, {"transId": new, "state": "STARTED", "timeoutSeconds": 120, "asyncExecution": False,
                     "validateOnly": False, "executionTimeout": 300, "kind": "tm:transactionstate",
                     "selfLink": dev.link(f"/mgmt/tm/transaction/{new}")}
    if tid is None or int(tid) not in dev.transactions:
        raise F5HttpError(404, f"Transaction {tid} not found.", framework=True)
    queue = dev.transactions[int(tid)]
    if method == "GET":
        return 200, {"transId": int(tid), "state": "STARTED", "kind": "tm:transactionstate"}
    if method == "PATCH" and body.get("state") == "VALIDATING":
        if not queue:
            raise F5HttpError(404, "there is no command to commit in the transaction.")
        saved = (copy.deepcopy(dev.profiles), copy.deepcopy(dev.server_profiles), dict(dev.certs), dict(dev.keys))
        try:
            for qm, qpath, qbody in queue:
                _route(dev, qm, qpath, {}, qbody, b"", {}, user)
        except F5HttpError as exc:
            dev.profiles, dev.server_profiles, dev.certs, dev.keys = saved
            del dev.transactions[int(tid)]
            raise F5HttpError(400, f"transaction failed:{exc.message}", api_error=2) from None
        del dev.transactions[int(tid)]
        return 200, {"transId": int(tid), "state": "COMPLETED", "kind": "tm:transactionstate"}
    if method == "DELETE":
        del dev.transactions[int(tid)]
        return 200, {}
    raise F5HttpError(400, "Unsupported transaction request", framework=True)
