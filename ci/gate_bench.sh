#!/usr/bin/env bash
# The gate's cost, measured side by side: the same wrk client, in the same run, calls a fast
# upstream (nginx answering a fixed 200) directly and through `sts-broker gate --require-mfa`
# with a presigned URL of an MFA session (so every request is verified, MFA policy included).
# Prints latency at concurrency 1 and throughput at concurrency 32, with their ratios. It
# asserts only that every request was admitted: speed is reported, never tested.
#
# Needs on PATH: wrk, nginx, aws, python3 with botocore; target/release/sts-broker.
# BENCH_SECS (default 8) sets each wrk run's duration.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
cargo build --release --quiet --bin sts-broker
BIN="$REPO/target/release/sts-broker"
SECS=${BENCH_SECS:-8}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/gate-bench.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ $rc -eq 0 ]] || tail -n 20 "$SCRATCH"/*.log 2>/dev/null || true
    rm -rf "$SCRATCH"
    exit "$rc"
}
trap cleanup EXIT
# shellcheck source=ci/lib.sh
source "$REPO/ci/lib.sh"

STS_PORT=$(free_port) UP_PORT=$(free_port) GATE_PORT=$(free_port)
DATA="$SCRATCH/data"
"$BIN" serve --listen "127.0.0.1:$STS_PORT" --data-dir "$DATA" >"$SCRATCH/broker.log" 2>&1 &
PIDS+=("$!")
wait_port "$STS_PORT" broker
cat >"$SCRATCH/upstream.conf" <<CONF
daemon off;
master_process off;
pid $SCRATCH/nginx.pid;
error_log stderr;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $SCRATCH/body;
    proxy_temp_path $SCRATCH/proxy;
    fastcgi_temp_path $SCRATCH/fastcgi;
    uwsgi_temp_path $SCRATCH/uwsgi;
    scgi_temp_path $SCRATCH/scgi;
    server {
        listen 127.0.0.1:$UP_PORT;
        location / { return 200 "ok\n"; }
    }
}
CONF
nginx -c "$SCRATCH/upstream.conf" -e stderr >"$SCRATCH/nginx.log" 2>&1 &
PIDS+=("$!")
wait_port "$UP_PORT" nginx
RUST_LOG=warn "$BIN" gate --listen "127.0.0.1:$GATE_PORT" --data-dir "$DATA" \
    --upstream "http://127.0.0.1:$UP_PORT" --require-mfa --max-mfa-age 3600 >"$SCRATCH/gate.log" 2>&1 &
PIDS+=("$!")
wait_port "$GATE_PORT" gate

unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_REGION AWS_ENDPOINT_URL
export AWS_DEFAULT_REGION=us-east-1
EP="http://127.0.0.1:$STS_PORT"
ROOT_KEY=$(sed -n 2p "$DATA/root-credentials.csv" | cut -d, -f2)
ROOT_SECRET=$(sed -n 2p "$DATA/root-credentials.csv" | cut -d, -f3)
mfa_user bench-user
creds=$(AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET aws --endpoint-url "$EP" \
    sts get-session-token --serial-number "$SERIAL" --token-code "$CODE" \
    --query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]' --output text)
GATED=$(python3 - "http://127.0.0.1:$GATE_PORT/bench?item=42" "$creds" <<'PY'
import sys
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
akid, secret, token = sys.argv[2].split("\t")
request = AWSRequest(method="GET", url=sys.argv[1])
SigV4QueryAuth(Credentials(akid, secret, token), "execute-api", "us-east-1", expires=900).add_auth(request)
print(request.url)
PY
)
DIRECT="http://127.0.0.1:$UP_PORT/${GATED#http://127.0.0.1:$GATE_PORT/}"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$GATED")
[[ $code == 200 ]] || { echo "error: the presigned URL answered $code through the gate" >&2; exit 1; }

# wrk's summary: mean latency (µs), p50 (µs), p99 (µs), requests/s; fails on any non-2xx.
run_wrk() { # THREADS CONNECTIONS URL
    local out
    out=$(wrk -t"$1" -c"$2" -d"${SECS}s" --latency "$3")
    if grep -q 'Non-2xx' <<<"$out"; then
        echo "$out" >&2
        echo "error: some requests were not admitted" >&2
        return 1
    fi
    python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def us(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        sys.exit("error: cannot read a latency from wrk's output:\n" + out)
    value, unit = match.groups()
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[unit]
def field(pattern):
    # Anchored at a line's start: "50%" also occurs inside the "+/- Stdev" column (77.50%).
    match = re.search(pattern, out, re.M)
    if match is None:
        sys.exit("error: wrk's output has no match for %r:\n%s" % (pattern, out))
    return match.group(1)
mean = us(field(r"^\s*Latency\s+(\S+)"))
p50 = us(field(r"^\s*50%\s+(\S+)"))
p99 = us(field(r"^\s*99%\s+(\S+)"))
rps = float(field(r"^Requests/sec:\s+([\d.]+)"))
total = int(field(r"^\s*(\d+) requests in"))
print(f"{mean:.0f} {p50:.0f} {p99:.0f} {rps:.0f} {total}")
PY
}

echo "wrk -d${SECS}s, the same client and run for both; upstream: nginx 'return 200'"
printf '%-34s %10s %10s %10s %12s %10s\n' "" "mean µs" "p50 µs" "p99 µs" "requests/s" "requests"
for shape in "1 1" "2 32"; do
    read -r threads conns <<<"$shape"
    # Assigned first: a failure inside `< <(...)` would not stop the script.
    direct=$(run_wrk "$threads" "$conns" "$DIRECT")
    gated=$(run_wrk "$threads" "$conns" "$GATED")
    read -r dm dp50 dp99 drps dn <<<"$direct"
    read -r gm gp50 gp99 grps gn <<<"$gated"
    printf '%-34s %10s %10s %10s %12s %10s\n' "direct, $conns connection(s)" "$dm" "$dp50" "$dp99" "$drps" "$dn"
    printf '%-34s %10s %10s %10s %12s %10s\n' "through the gate, $conns connection(s)" "$gm" "$gp50" "$gp99" "$grps" "$gn"
    python3 - "$dm" "$gm" "$dp50" "$gp50" "$drps" "$grps" "$conns" <<'PY'
import sys
dm, gm, dp50, gp50, drps, grps, conns = map(float, sys.argv[1:])
print(f"  {int(conns)} connection(s): added latency {gm - dm:.0f} µs mean ({gm / dm:.2f}x), "
      f"{gp50 - dp50:.0f} µs p50 ({gp50 / dp50:.2f}x); throughput {grps / drps:.2f}x of direct")
PY
done
