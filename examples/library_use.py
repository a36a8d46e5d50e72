"""tlsgate as a library: the same job as the quickstart, from Python, with a dry-run plan first.

    .venv/bin/python examples/library_use.py

Uses a throw-away TLSGATE_HOME and demo files (examples/make_demo_files.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tlsgate-lib-"))
    os.environ["TLSGATE_HOME"] = str(work / "home")
    subprocess.run([sys.executable, str(Path(__file__).with_name("make_demo_files.py")), str(work / "demo")], check=True)

    from tlsgate import CertificateBundle, Gateway, OperationError, Secret

    gw = Gateway()
    gw.add_endpoint("p12", name="app", connection_type="local",
                    options={"path": str(work / "demo/keystores/app.p12"), "store_password": Secret("changeit")})
    gw.add_org("Acme")
    gw.delegate("app", "Acme")
    for node in gw.discover("app"):
        print(f"before: {node.name} {node.subject} expires {node.not_after:%Y-%m-%d}")

    new = work / "demo/new"
    bundle = CertificateBundle.from_pem_files(new / "app.crt", new / "app.key", new / "chain.crt")
    for step in gw.install("app", bundle, alias="app", dry_run=True).result.plan:
        print(f"plan:   {step}")
    try:
        outcome = gw.install("app", bundle, alias="app")
    except OperationError as exc:  # the transaction restored the keystore
        sys.exit(f"install failed (rolled back: {exc.rolled_back}): {exc}")
    print(f"installed certificate {outcome.certificate_id} on {', '.join(outcome.result.nodes)}")
    for view in gw.nodes("app"):
        print(f"after:  {view.node.name} SSL={view.ssl} expires {view.node.not_after:%Y-%m-%d}")


if __name__ == "__main__":
    main()
