#!/usr/bin/env bash
# Instructions per request on the broker's hot path, by function (BENCHMARKS.md, "Where the time
# goes"): the release broker under valgrind --tool=callgrind, instrumentation switched on only
# while sts-bench drives one workload, then callgrind_annotate, normalised per request.
#
# Settings (environment):
#   PROFILE_WORKLOADS   default "gst-mfa gci-session gci-key gst"
#   PROFILE_USERS       users provisioned (default 2000)
#   PROFILE_SECONDS     seconds of load per workload (default 10)
#   PROFILE_DIR         work directory (default target/bench/profile)
#   PROFILE_TOP         functions listed per workload (default 30)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
WORKLOADS=${PROFILE_WORKLOADS:-"gst-mfa gci-session gci-key gst"}
USERS=${PROFILE_USERS:-2000}
SECONDS_PER=${PROFILE_SECONDS:-10}
DIR=${PROFILE_DIR:-$REPO/target/bench/profile}
TOP=${PROFILE_TOP:-30}
while IFS= read -r var; do unset "$var"; done < <(compgen -v | grep -E '^(STS_BROKER_|AWS_)' || true)

command -v valgrind >/dev/null || {
    echo "valgrind is needed (Debian: apt-get install valgrind)" >&2
    exit 1
}
cargo build --release --quiet && cargo build --release --quiet -p sts-broker-bench
BROKER="$REPO/target/release/sts-broker"
GEN="$REPO/target/release/sts-bench"

rm -rf "$DIR"
mkdir -p "$DIR"
"$BROKER" admin bench-provision --data-dir "$DIR/data" --users "$USERS" --out "$DIR/creds.csv" >&2

port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
URL="http://127.0.0.1:$port"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$DIR/callgrind.out.%p" \
    "$BROKER" serve --listen "127.0.0.1:$port" --data-dir "$DIR/data" >"$DIR/broker.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null' EXIT
"$GEN" wait --url "$URL" --creds "$DIR/creds.csv" --timeout 300 >/dev/null
"$GEN" sessions --url "$URL" --creds "$DIR/creds.csv" --count 16 --out "$DIR/sessions.csv" >/dev/null

for w in $WORKLOADS; do
    callgrind_control -z "$PID" >/dev/null
    callgrind_control -i on "$PID" >/dev/null
    "$GEN" run --url "$URL" --creds "$DIR/creds.csv" --sessions "$DIR/sessions.csv" --workload "$w" \
        -c 4 -t 1 -d "$SECONDS_PER" --timeout 60 --label callgrind >"$DIR/$w.json"
    callgrind_control -i off "$PID" >/dev/null
    callgrind_control -d "$w" "$PID" >/dev/null
    sleep 1
    out=$(ls -t "$DIR"/callgrind.out.$PID.* | head -n1)
    mv "$out" "$DIR/$w.callgrind"
    requests=$(python3 -c "import json; r=json.load(open('$DIR/$w.json')); print(r['requests'] + r['drained'])")
    errors=$(python3 -c "import json; print(json.load(open('$DIR/$w.json'))['errors'])")
    callgrind_annotate --threshold=100 "$DIR/$w.callgrind" >"$DIR/$w.self.txt"
    callgrind_annotate --inclusive=yes --threshold=100 "$DIR/$w.callgrind" >"$DIR/$w.inclusive.txt"
    python3 - "$w" "$requests" "$errors" "$DIR/$w.self.txt" "$DIR/$w.inclusive.txt" "$TOP" <<'EOF'
import re, sys
w, n, errors, self_file, incl_file, top = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
def rows(path):
    out = []
    for line in open(path):
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*)$", line)
        if m and ":" in m.group(2):
            out.append((int(m.group(1).replace(",", "")), m.group(2)))
    return out
total = 0
for line in open(self_file):
    m = re.match(r"\s*([\d,]+)\s+\(100.0%\)\s+PROGRAM TOTALS", line) or re.match(r"\s*([\d,]+)\s+PROGRAM TOTALS", line)
    if m:
        total = int(m.group(1).replace(",", ""))
print(f"== {w}: {n} requests ({errors} errors), {total / max(n, 1):,.0f} instructions per request")
def name(s):
    s = re.sub(r"^\S*?:", "", s, count=1) if s.startswith(("/", "?", "???")) else s
    s = re.sub(r"\s*\[[^\]]*\]$", "", s)
    return s[:150]
print(f"-- self (exclusive) instructions per request, top {top}")
for ir, fn in rows(self_file)[:top]:
    print(f"{ir / n:>10,.0f}  {100 * ir / max(total, 1):5.1f}%  {name(fn)}")
print(f"-- inclusive instructions per request, top {top}")
for ir, fn in rows(incl_file)[:top]:
    print(f"{ir / n:>10,.0f}  {100 * ir / max(total, 1):5.1f}%  {name(fn)}")
print()
EOF
done
