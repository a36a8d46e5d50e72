"""``tls restart`` for IIS: restart the World Wide Web Publishing Service (W3SVC).

An install needs no restart: HTTP.sys serves a binding's new certificate from the moment the
binding is changed. When the operator asks for a restart anyway, the driver restarts W3SVC with
``Restart-Service`` and waits until it runs again, then starts any site that was started before
and did not come back. It does not run ``iisreset``: that stops and starts every IIS-related
service on the host (WAS, FTP, the IIS Admin service, SMTP where present), and ``/noforce`` only
changes what happens when a service refuses to stop. W3SVC is the service that serves the sites
whose certificates tlsgate manages; restarting it recycles their worker processes and nothing else.
"""

from __future__ import annotations

from tlsgate.plugin import Connection, OperationError, RestartResult

from . import scripts
from .discovery import decode_json, failure_detail

#: Seconds to wait for W3SVC to report Running again.
START_TIMEOUT = 60


def restart_w3svc(connection: Connection) -> RestartResult:
    res = connection.run_powershell(scripts.RESTART, {"timeout": START_TIMEOUT}, timeout=START_TIMEOUT + 60)
    if not res.ok:
        detail = failure_detail(res)
        raise OperationError(f"{connection.host}: restarting IIS (W3SVC) failed: {detail}", host=connection.host)
    data = decode_json(res.stdout, connection.host, "iis-restart") or {}
    service = str(data.get("service") or "")
    sites = data.get("sites") or []
    sites = sites if isinstance(sites, list) else [sites]
    down = [str(s.get("name")) for s in sites if s.get("before") == "Started" and s.get("after") != "Started"]
    if service != "Running":
        raise OperationError(f"{connection.host}: W3SVC is {service or 'in an unknown state'} after the restart",
                             host=connection.host)
    started = sum(1 for s in sites if s.get("after") == "Started")
    message = (f"restarted W3SVC (World Wide Web Publishing Service) on {connection.host}; "
               f"{started} of {len(sites)} site(s) started; certificate bindings had already taken effect at install")
    if down:
        raise OperationError(f"{connection.host}: W3SVC restarted but these sites did not start again: "
                             + ", ".join(down), host=connection.host)
    return RestartResult(restarted=True, message=message)
