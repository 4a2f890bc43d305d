#!/usr/bin/env bash
# Schemathesis against openapi/openapi.yaml on a live broker (.ci/run): every generated request
# is SigV4-signed with the root credentials (ci/schemathesis_hooks.py), so that it reaches the
# handlers; bounded in examples and time. Fails on any 5xx, any answer that does not conform to
# the spec (status, content type, headers, XML body against its schema, root element), a broker
# panic, or too few inputs that got past authentication.
#
# Usage: ci/schemathesis_check.sh BROKER_BINARY
# Settings (environment): SCHEMATHESIS (the `schemathesis` command; default: on PATH),
#   ST_MAX_EXAMPLES (default 40), ST_MAX_TIME (seconds, default 90), ST_SEED (default 8).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BROKER=${1:?usage: ci/schemathesis_check.sh BROKER_BINARY}
ST=${SCHEMATHESIS:-schemathesis}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sts-schemathesis.XXXXXX")
PID=""
cleanup() {
    local rc=$?
    set +e
    if [[ -n $PID ]]; then
        kill -TERM "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
    fi
    if [[ $rc -ne 0 && -s $WORK/broker.log ]]; then
        echo "--- last lines of the broker's log"
        tail -n 30 "$WORK/broker.log"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

"$BROKER" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/broker.log" 2>&1 &
PID=$!
URL=""
for _ in $(seq 1 200); do
    URL=$(sed -n 's|^sts-broker listening on \(http://[0-9.:]*\).*|\1|p' "$WORK/broker.log")
    [[ -n $URL ]] && break
    kill -0 "$PID" 2>/dev/null || { echo "error: the broker exited" >&2; exit 1; }
    sleep 0.1
done
[[ -n $URL ]] || { echo "error: the broker reported no address" >&2; exit 1; }

TALLY="$WORK/tally.jsonl"
: >"$TALLY"
STS_BROKER_DATA_DIR="$WORK/data" STS_SCHEMATHESIS_TALLY="$TALLY" \
    SCHEMATHESIS_HOOKS=ci.schemathesis_hooks PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" \
    "$ST" run openapi/openapi.yaml --url "$URL" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,xml_root_conformance \
    --max-examples "${ST_MAX_EXAMPLES:-40}" --max-time "${ST_MAX_TIME:-90}" --seed "${ST_SEED:-8}" \
    --request-timeout 10 --generation-database none --no-color

if grep -E 'panicked' "$WORK/broker.log"; then
    echo "error: the broker panicked under schemathesis" >&2
    exit 1
fi
# How far the generated inputs got: answered by the actions, not only by the authentication.
python3 - "$TALLY" <<'PY'
import collections, json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by_status = collections.Counter(r["status"] for r in rows)
ok_actions = sorted({r["action"] for r in rows if r["status"] == 200})
codes = collections.Counter(r["code"] for r in rows if r["code"])
print(f"schemathesis: {len(rows)} requests; by status {dict(sorted(by_status.items()))}")
print(f"  answered 200 for {len(ok_actions)} actions: {', '.join(ok_actions)}")
print(f"  error codes: {dict(codes.most_common())}")
if any(s >= 500 for s in by_status):
    sys.exit("error: the broker answered 5xx")
if len(ok_actions) < 8:
    sys.exit("error: fewer than 8 actions answered 200: the generated inputs did not reach the handlers")
PY
