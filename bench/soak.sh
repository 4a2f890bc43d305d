#!/usr/bin/env bash
# The soak run (BENCHMARKS.md, "Soak"): the release broker on freshly provisioned users, valid
# traffic alone (quiet run), then the same valid traffic beside hostile clients (mixed run):
# forged signatures, replayed and wrong MFA codes, oversized bodies, slowloris and silent
# connections. `sts-bench soak` prints the figures and fails when a valid request fails, the
# valid p99 grows beyond 2x the quiet run's (and by over 5 ms), a hostile request is accepted or
# answered 5xx, a held connection outlives the broker's deadline, or RSS or open descriptors
# grow. Loopback only; every phase is bounded in time. The last line is one JSON object.
#
# Settings (environment):
#   SOAK_SHORT=1          CI's run: 10 s quiet, 40 s mixed, fewer held connections
#   SOAK_QUIET            seconds of the quiet run (default 30)
#   SOAK_DURATION         seconds of the mixed run (default 180)
#   SOAK_USERS            users provisioned (default 2000)
#   SOAK_RATE             valid requests per second (default 500)
#   SOAK_HOSTILE_RATE     hostile requests per second (default 200)
#   SOAK_SILENT           silent connections (default 512)
#   SOAK_SLOWLORIS        slowloris connections (default 128)
#   SOAK_DIR              work directory (default target/soak)
#   SOAK_SKIP_BUILD=1     use the release binaries already in target/release
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
if [[ ${SOAK_SHORT:-0} == 1 ]]; then
    QUIET=${SOAK_QUIET:-10}
    DURATION=${SOAK_DURATION:-40}
    USERS=${SOAK_USERS:-400}
    SILENT=${SOAK_SILENT:-256}
    SLOWLORIS=${SOAK_SLOWLORIS:-64}
else
    QUIET=${SOAK_QUIET:-30}
    DURATION=${SOAK_DURATION:-180}
    USERS=${SOAK_USERS:-2000}
    SILENT=${SOAK_SILENT:-512}
    SLOWLORIS=${SOAK_SLOWLORIS:-128}
fi
RATE=${SOAK_RATE:-500}
HOSTILE_RATE=${SOAK_HOSTILE_RATE:-200}
DIR=${SOAK_DIR:-$REPO/target/soak}

# Nothing from the host may reconfigure the broker under test.
while IFS= read -r var; do unset "$var"; done < <(compgen -v | grep -E '^(STS_BROKER_|AWS_)' || true)

BROKER_PID=""
cleanup() {
    local rc=$?
    set +e
    if [[ -n $BROKER_PID ]]; then
        kill -TERM "$BROKER_PID" 2>/dev/null
        wait "$BROKER_PID" 2>/dev/null
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

if [[ ${SOAK_SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries"
    cargo build --release --quiet && cargo build --release --quiet -p sts-broker-bench
fi
BROKER="$REPO/target/release/sts-broker"
GEN="$REPO/target/release/sts-bench"

RUN="$DIR/run-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RUN"
DATA="$RUN/data"
CREDS="$RUN/creds.csv"
log "provisioning $USERS users"
"$BROKER" admin bench-provision --data-dir "$DATA" --users "$USERS" --out "$CREDS" >&2

"$BROKER" serve --listen 127.0.0.1:0 --data-dir "$DATA" >"$RUN/broker.log" 2>&1 &
BROKER_PID=$!
URL=""
for _ in $(seq 1 300); do
    URL=$(sed -n 's|^sts-broker listening on \(http://[0-9.:]*\).*|\1|p' "$RUN/broker.log" | head -n1)
    [[ -n $URL ]] && break
    kill -0 "$BROKER_PID" 2>/dev/null || { cat "$RUN/broker.log" >&2; echo "error: the broker exited" >&2; exit 1; }
    sleep 0.1
done
[[ -n $URL ]] || { echo "error: the broker reported no address" >&2; exit 1; }
"$GEN" wait --url "$URL" --creds "$CREDS" >/dev/null
log "broker $URL (pid $BROKER_PID), open-file limit $(awk '/Max open files/ {print $4 "/" $5}' "/proc/$BROKER_PID/limits"); $(grep -m1 -o 'max_connections[^,]*' "$RUN/broker.log" || echo 'max_connections not logged')"

rc=0
"$GEN" soak --url "$URL" --creds "$CREDS" --server-pid "$BROKER_PID" \
    --quiet "$QUIET" --duration "$DURATION" --rate "$RATE" --hostile-rate "$HOSTILE_RATE" \
    --silent "$SILENT" --slowloris "$SLOWLORIS" >"$RUN/soak.json" || rc=$?
kill -TERM "$BROKER_PID" 2>/dev/null || true
wait "$BROKER_PID" 2>/dev/null || true
BROKER_PID=""
if grep -E 'panicked' "$RUN/broker.log" >&2; then
    echo "error: the broker panicked during the soak" >&2
    rc=1
fi
cat "$RUN/soak.json"
exit "$rc"
