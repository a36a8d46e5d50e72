#!/usr/bin/env bash
# tlsgate quickstart: a throw-away CA, p12 / jks / pem keystores on this machine, and the whole
# job: add endpoints, delegate, discover, find what expires, deploy its successor everywhere it is
# served as one job, verify, list nodes, read the log.
# Uses a private TLSGATE_HOME so it never touches a real inventory. CI runs this script.
set -euo pipefail
cd "$(dirname "$0")/.."
TLSGATE=${TLSGATE:-.venv/bin/tlsgate}
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tlsgate-quickstart.XXXXXX")
export TLSGATE_HOME="$WORK/home"
trap 'rm -rf "$WORK"' EXIT
run() { echo "+ tlsgate $*"; "$TLSGATE" "$@"; }

"$PY" examples/make_demo_files.py "$WORK/demo"
S="$WORK/demo/keystores"; N="$WORK/demo/new"

# store passwords come from standard input ('-'), so they never appear in `ps`
echo changeit | run tls add p12 --name app-p12 --connection_type local --path "$S/app.p12" --store_password - --is_legacy false
echo changeit | run tls add jks --name app-jks --connection_type local --path "$S/app.jks" --store_password -
run tls add pem --name app-pem --connection_type local --path "$S/app.pem"
run tls list

run org add Acme
run org add-department Acme Payments
for ep in app-p12 app-jks app-pem; do
  run tls delegate "$ep" --org Acme --department Payments
  run tls discover "$ep"
done

# the loop an operator lives in: a certificate is about to expire; its successor goes to every
# node that serves it, as one tracked job (each endpoint a transaction), then verified
run cert expiring --days 30
OLD=$("$TLSGATE" cert expiring --days 30 --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["fingerprint"])')
run cert deploy --cert "$N/app.crt" --key "$N/app.key" --chain "$N/chain.crt" --replaces "$OLD" --dry-run
run cert deploy --cert "$N/app.crt" --key "$N/app.key" --chain "$N/chain.crt" --replaces "$OLD" --parallel 3
run tls verify --all
run job list
for ep in app-p12 app-jks app-pem; do
  run tls nodes "$ep"
done
run cert list
run log
echo "quickstart: done"
