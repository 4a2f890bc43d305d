#!/usr/bin/env bash
# Runs every example in examples/ against real processes on free loopback ports: a release
# broker, examples/echo_api.py as the API, `sts-broker gate` in front of it, nginx with
# examples/nginx/sts-broker-gate.conf, and examples/gated_service.rs. Each example gets a user
# of its own with an MFA device (a TOTP code is accepted once, so one device per session).
#
# Needs on PATH: cargo, aws, python3 with boto3, curl, nginx.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# The broker and gate from the release build; the Rust examples as `cargo test` built them (a
# release build of the SDK would add minutes for nothing the examples show).
cargo build --release --quiet --bin sts-broker
cargo build --quiet --example gated_service --example sdk_client
BIN="$REPO/target/release/sts-broker"
EXAMPLES="$REPO/target/debug/examples"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/examples-check.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $rc -ne 0 ]]; then
        for log in "$SCRATCH"/*.log; do
            echo "--- last lines of $(basename "$log")"
            tail -n 20 "$log"
        done
    fi
    rm -rf "$SCRATCH"
    exit "$rc"
}
trap cleanup EXIT

# shellcheck source=ci/lib.sh
source "$REPO/ci/lib.sh"
start() { # NAME PORT COMMAND…
    local name=$1 port=$2
    shift 2
    "$@" >"$SCRATCH/$name.log" 2>&1 </dev/null &
    PIDS+=("$!")
    wait_port "$port" "$name"
}
expect() { # TEXT FILE
    grep -qF -- "$1" "$2" || { echo "error: $(basename "$2") lacks: $1" >&2; cat "$2" >&2; exit 1; }
}

STS_PORT=$(free_port) API_PORT=$(free_port) GATE_PORT=$(free_port) NGINX_PORT=$(free_port) SVC_PORT=$(free_port)
DATA="$SCRATCH/data"
start broker "$STS_PORT" "$BIN" serve --listen "127.0.0.1:$STS_PORT" --data-dir "$DATA"
start api "$API_PORT" python3 examples/echo_api.py "$API_PORT"
start gate "$GATE_PORT" "$BIN" gate --listen "127.0.0.1:$GATE_PORT" --data-dir "$DATA" \
    --upstream "http://127.0.0.1:$API_PORT" --require-mfa --max-mfa-age 3600
mkdir -p "$SCRATCH/nginx"
sed -e "s/127.0.0.1:8081/127.0.0.1:$GATE_PORT/" -e "s/127.0.0.1:9000/127.0.0.1:$API_PORT/" \
    -e "s/127.0.0.1:8088/127.0.0.1:$NGINX_PORT/" examples/nginx/sts-broker-gate.conf >"$SCRATCH/nginx/sts-broker-gate.conf"
sed -e "s|/tmp/sts-broker-nginx|$SCRATCH/nginx/nginx|" examples/nginx/nginx.conf >"$SCRATCH/nginx/nginx.conf"
start nginx "$NGINX_PORT" nginx -c "$SCRATCH/nginx/nginx.conf" -e stderr
start gated_service "$SVC_PORT" "$EXAMPLES/gated_service" --data-dir "$DATA" \
    --listen "127.0.0.1:$SVC_PORT" --max-mfa-age 3600

unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_REGION AWS_ENDPOINT_URL
export AWS_DEFAULT_REGION=us-east-1
EP="http://127.0.0.1:$STS_PORT"
ROOT_KEY=$(sed -n 2p "$DATA/root-credentials.csv" | cut -d, -f2)
ROOT_SECRET=$(sed -n 2p "$DATA/root-credentials.csv" | cut -d, -f3)
echo "=== examples/get_session_token.sh (AWS CLI + curl, through the gateway and nginx)"
mfa_user cli-user
AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET MFA_SERIAL=$SERIAL MFA_CODE=$CODE \
    STS_ENDPOINT="$EP" GATE_URL="http://127.0.0.1:$GATE_PORT" NGINX_URL="http://127.0.0.1:$NGINX_PORT" \
    examples/get_session_token.sh | tee "$SCRATCH/cli.out"
[[ $(grep -c '"x-sts-broker-mfa-authenticated": "true"' "$SCRATCH/cli.out") -eq 2 ]] ||
    { echo "error: the gateway and nginx did not both pass the MFA identity" >&2; exit 1; }
expect '"path": "/hello?from=nginx"' "$SCRATCH/cli.out"
expect '"__type":"AccessDenied"' "$SCRATCH/cli.out"

echo "=== examples/sdk_client.rs (aws-sdk-rust + aws-sigv4) -> examples/gated_service.rs (MfaLayer)"
mfa_user sdk-user
AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET MFA_SERIAL=$SERIAL MFA_CODE=$CODE \
    STS_ENDPOINT="$EP" GATED_URL="http://127.0.0.1:$SVC_PORT/hello" \
    "$EXAMPLES/sdk_client" | tee "$SCRATCH/sdk.out"
expect ":user/sdk-user (MFA " "$SCRATCH/sdk.out"
code=$(curl -sS -o "$SCRATCH/refused.out" -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:execute-api" \
    --user "$KEY:$SECRET" "http://127.0.0.1:$SVC_PORT/hello")
[[ $code == 403 ]] || { echo "error: gated_service answered $code to a long-term key" >&2; exit 1; }
expect '"__type":"AccessDenied"' "$SCRATCH/refused.out"

echo "=== examples/boto3_client.py (boto3 + botocore SigV4Auth, through the gateway)"
mfa_user boto3-user
AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET MFA_SERIAL=$SERIAL MFA_CODE=$CODE \
    STS_ENDPOINT="$EP" GATED_URL="http://127.0.0.1:$GATE_PORT/orders" \
    python3 examples/boto3_client.py | tee "$SCRATCH/boto3.out"
expect '"x-sts-broker-principal-arn": "arn:aws:iam::' "$SCRATCH/boto3.out"
expect '"body_bytes": 13' "$SCRATCH/boto3.out"

echo "examples: all ran"
