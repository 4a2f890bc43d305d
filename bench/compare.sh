#!/usr/bin/env bash
# The sts-broker benchmark (BENCHMARKS.md): the same generator and settings, in one run, against
# the release broker, the hyper floor (bench/src/bin/sts-bench-floor.rs), moto_server and
# `sts-broker gate` in front of the floor, rounds rotated; wrk against the floor shows the
# generator is not the bottleneck. Prints one line per
# window, the per-round ratios and their medians; the last line is one JSON object.
#
# Settings (environment):
#   BENCH_TINY=1          CI's smoke run: 300 users, 1 s windows, one round, no moto, no wrk
#   BENCH_USERS           users provisioned (default 100000)
#   BENCH_DURATION        seconds per window (default 8)
#   BENCH_ROUNDS          rounds (default 3)
#   BENCH_CONCURRENCY     connection counts (default "16 64")
#   BENCH_THREADS         generator threads, like wrk -t (default 2)
#   BENCH_WORKLOADS       default "gst-mfa gst gci-key gci-session"
#   BENCH_TARGETS         default "broker floor moto gate" (tiny: "broker floor gate"); gate is
#                         `sts-broker gate --require-mfa` on the broker's data dir with the floor
#                         as its upstream, driven with MFA sessions signed for execute-api
#   BENCH_WRK             1 to run wrk against the floor each round (default 1; 0 in tiny mode)
#   BENCH_DIR             work directory (default target/bench)
#   BENCH_FRESH=1         provision anew even if BENCH_DIR holds a store of BENCH_USERS users
#   BENCH_MAX_REQUESTS    most single-use GetSessionToken-with-MFA requests signed per window
#   BENCH_MIN_REQUESTS    fewer unused codes than this: wait for the next TOTP step (USERS/2)
#   BENCH_SKIP_BUILD=1    use the release binaries already in target/release
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
TINY=${BENCH_TINY:-0}
if [[ $TINY == 1 ]]; then
    USERS=${BENCH_USERS:-300}
    DURATION=${BENCH_DURATION:-1}
    ROUNDS=${BENCH_ROUNDS:-1}
    TARGETS=${BENCH_TARGETS:-"broker floor gate"}
    WRK=${BENCH_WRK:-0}
else
    USERS=${BENCH_USERS:-100000}
    DURATION=${BENCH_DURATION:-8}
    ROUNDS=${BENCH_ROUNDS:-3}
    TARGETS=${BENCH_TARGETS:-"broker floor moto gate"}
    WRK=${BENCH_WRK:-1}
fi
CONCURRENCY=${BENCH_CONCURRENCY:-"16 64"}
THREADS=${BENCH_THREADS:-2}
WORKLOADS=${BENCH_WORKLOADS:-"gst-mfa gst gci-key gci-session"}
DIR=${BENCH_DIR:-$REPO/target/bench}
MAX_REQUESTS=${BENCH_MAX_REQUESTS:-600000}
# A GetSessionToken-with-MFA window waits for the next TOTP step rather than run on fewer codes.
MIN_REQUESTS=${BENCH_MIN_REQUESTS:-$((USERS / 2 < 50000 ? USERS / 2 : 50000))}
MOTO_VERSION=5.2.5

# Nothing from the host may reconfigure the broker under test.
while IFS= read -r var; do unset "$var"; done < <(compgen -v | grep -E '^(STS_BROKER_|AWS_)' || true)

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
RUN="$DIR/run-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RUN"
RESULTS="$RUN/results.jsonl"
: >"$RESULTS"
PIDS=()

cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# Waits for "PATTERN http://ADDR" in a log file; prints the URL.
url_from_log() {
    local file=$1 pattern=$2 pid=$3 url=""
    for _ in $(seq 1 600); do
        url=$(sed -n "s|^$pattern \(http://[0-9.:]*\).*|\1|p" "$file" | head -n1)
        [[ -n $url ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; echo "error: $pattern exited" >&2; return 1; }
        sleep 0.1
    done
    [[ -n $url ]] || { echo "error: no address in $file" >&2; return 1; }
    echo "$url"
}

# --------------------------------------------------------------------------------------------
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries"
    cargo build --release --quiet && cargo build --release --quiet -p sts-broker-bench
fi
BROKER="$REPO/target/release/sts-broker"
GEN="$REPO/target/release/sts-bench"
FLOOR="$REPO/target/release/sts-bench-floor"

has_target() { [[ " $TARGETS " == *" $1 "* ]]; }

if has_target moto; then
    VENV="$DIR/venv"
    if [[ ! -x $VENV/bin/moto_server ]]; then
        log "installing moto[server]==$MOTO_VERSION into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
    fi
fi

if [[ $WRK == 1 ]] && ! command -v wrk >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing wrk (apt)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
    else
        log "wrk is not installed and apt-get is not usable here: skipping the generator-vs-wrk check"
        WRK=0
    fi
fi

# --------------------------------------------------------------------------------------------
# Provisioning: through `sts-broker admin bench-provision` (store::ops, in large batches).
DATA="$DIR/data-$USERS"
CREDS="$DIR/creds-$USERS.csv"
PROVISION_S=None
if [[ ${BENCH_FRESH:-0} == 1 || ! -s $CREDS || ! -d $DATA ]]; then
    rm -rf "$DATA" "$CREDS" "$CREDS.spent"
    log "provisioning $USERS users"
    t0=$(date +%s.%N)
    "$BROKER" admin bench-provision --data-dir "$DATA" --users "$USERS" --out "$CREDS" >&2
    PROVISION_S=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
    log "provisioned in $PROVISION_S s"
else
    log "reusing $USERS provisioned users in $DATA (BENCH_FRESH=1 to provision anew)"
fi
DB_MIB=$(python3 -c "import os; print(round(os.path.getsize('$DATA/sts-broker.db') / 1048576, 1))")

# --------------------------------------------------------------------------------------------
# Targets
t0=$(date +%s.%N)
"$BROKER" serve --listen 127.0.0.1:0 --data-dir "$DATA" >"$RUN/broker.log" 2>&1 &
BROKER_PID=$!
PIDS+=("$BROKER_PID")
BROKER_URL=$(url_from_log "$RUN/broker.log" "sts-broker listening on" "$BROKER_PID")
STARTUP_S=$("$GEN" wait --url "$BROKER_URL" --creds "$CREDS" --since "$t0" |
    python3 -c "import json,sys; print(round(json.load(sys.stdin)['ready_s'], 3))")
RSS_START_MIB=$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$BROKER_PID/status")
log "broker $BROKER_URL (pid $BROKER_PID): first request served $STARTUP_S s after start, RSS $RSS_START_MIB MiB, DB $DB_MIB MiB"

SESSIONS="$RUN/sessions.csv"
TOKEN_LEN=$("$GEN" sessions --url "$BROKER_URL" --creds "$CREDS" --count 64 --out "$SESSIONS" |
    python3 -c "import json,sys; print(json.load(sys.stdin)['token_len'])")

FLOOR_URL="" FLOOR_PID=""
if has_target floor || has_target gate; then
    "$FLOOR" --listen 127.0.0.1:0 >"$RUN/floor.log" 2>&1 &
    FLOOR_PID=$!
    PIDS+=("$FLOOR_PID")
    FLOOR_URL=$(url_from_log "$RUN/floor.log" "sts-bench-floor listening on" "$FLOOR_PID")
    log "floor $FLOOR_URL (pid $FLOOR_PID)"
fi

MOTO_URL="" MOTO_PID=""
if has_target moto; then
    port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$RUN/moto.log" 2>&1 &
    MOTO_PID=$!
    PIDS+=("$MOTO_PID")
    MOTO_URL="http://127.0.0.1:$port"
    "$GEN" wait --url "$MOTO_URL" --creds "$CREDS" --timeout 60 >/dev/null
    log "moto_server $MOTO_URL (pid $MOTO_PID)"
fi

# The gate: the broker's data dir followed read-only, MFA required, the floor behind it. Its
# audit log (refusals only) goes beside the run's other logs.
GATE_URL="" GATE_PID=""
if has_target gate; then
    STS_BROKER_AUDIT_LOG="$RUN/gate-audit.log" "$BROKER" gate --listen 127.0.0.1:0 \
        --data-dir "$DATA" --upstream "$FLOOR_URL" --require-mfa >"$RUN/gate.log" 2>&1 &
    GATE_PID=$!
    PIDS+=("$GATE_PID")
    GATE_URL=$(url_from_log "$RUN/gate.log" "sts-broker gate listening on" "$GATE_PID")
    log "gate $GATE_URL (pid $GATE_PID) in front of the floor"
fi

if [[ $WRK == 1 && -n $FLOOR_URL ]]; then
    "$GEN" wrk-script --url "$FLOOR_URL" --creds "$CREDS" --workload gst-mfa --out "$RUN/floor.lua"
fi

# One window: appends its JSON line, with the round, to $RESULTS.
window() {
    local round=$1 target=$2 workload=$3 conc=$4 url pid extra=()
    case $target in
        broker) url=$BROKER_URL pid=$BROKER_PID extra=(--sessions "$SESSIONS") ;;
        floor) url=$FLOOR_URL pid=$FLOOR_PID extra=(--unchecked) ;;
        moto) url=$MOTO_URL pid=$MOTO_PID extra=(--unchecked --token-len "$TOKEN_LEN") ;;
        gate) url=$GATE_URL pid=$GATE_PID extra=(--sessions "$SESSIONS" --service execute-api) ;;
    esac
    "$GEN" run --url "$url" --creds "$CREDS" --workload "$workload" -c "$conc" -t "$THREADS" \
        -d "$DURATION" --server-pid "$pid" --label "$target" --max-requests "$MAX_REQUESTS" --min-requests "$MIN_REQUESTS" \
        "${extra[@]}" | sed "s/^{/{\"round\":$round,\"tool\":\"sts-bench\",/" >>"$RESULTS"
}

# wrk against the floor with the same request; appends a JSON line.
wrk_window() {
    local round=$1 conc=$2 out
    out=$(wrk -t "$THREADS" -c "$conc" -d "${DURATION}s" --latency -s "$RUN/floor.lua" "$FLOOR_URL/")
    WRK_OUT=$out python3 - "$round" "$conc" >>"$RESULTS" <<'EOF'
import json, os, re, sys
text = os.environ["WRK_OUT"]
def ms(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(json.dumps({"round": int(sys.argv[1]), "tool": "wrk", "label": "floor", "workload": "gst-mfa",
                  "concurrency": int(sys.argv[2]), "rps": rps, "p50_ms": ms(lat["50"]),
                  "p99_ms": ms(lat["99"]), "errors": errors + (int(non2xx.group(1)) if non2xx else 0)}))
EOF
}

read -r -a TARGET_LIST <<<"$TARGETS"
read -r -a CONC_LIST <<<"$CONCURRENCY"
read -r -a WORKLOAD_LIST <<<"$WORKLOADS"
log "$ROUNDS round(s) x ${DURATION} s windows; targets: $TARGETS; concurrency: $CONCURRENCY; workloads: $WORKLOADS"
for ((round = 1; round <= ROUNDS; round++)); do
    n=${#TARGET_LIST[@]}
    for ((i = 0; i < n; i++)); do
        target=${TARGET_LIST[$(((i + round - 1) % n))]}
        for conc in "${CONC_LIST[@]}"; do
            if [[ $target == floor ]]; then
                # The floor answers the same bytes whatever the request: one workload suffices.
                window "$round" floor gst-mfa "$conc"
                [[ $WRK == 1 ]] && wrk_window "$round" "$conc"
            elif [[ $target == gate ]]; then
                # What the gate admits: requests signed with MFA session credentials.
                window "$round" gate gci-session "$conc"
            else
                for workload in "${WORKLOAD_LIST[@]}"; do
                    window "$round" "$target" "$workload" "$conc"
                done
            fi
        done
    done
done

# --------------------------------------------------------------------------------------------
RSS_MIB=$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$BROKER_PID/status")
python3 - "$RESULTS" <<EOF
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None
def pick(tool, label, workload, conc, rnd):
    for r in rows:
        if (r.get("tool"), r["label"], r["workload"], r["concurrency"], r["round"]) == (tool, label, workload, conc, rnd):
            return r
    return None
rounds = sorted({r["round"] for r in rows})
concs = [int(c) for c in "$CONCURRENCY".split()]
workloads = "$WORKLOADS".split()

print()
print(f"{'round':>5} {'target':<7} {'workload':<12} {'conc':>4} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'errors':>6} {'CPU us/req':>10} {'window s':>8}  stopped by")
for r in rows:
    cpu = r.get("server_cpu_us_per_req")
    print(f"{r['round']:>5} {r['label'] + ('' if r.get('tool') == 'sts-bench' else '/wrk'):<7} {r['workload']:<12} {r['concurrency']:>4} "
          f"{r['rps']:>9.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r.get('max_ms', 0):>7.1f} {r['errors']:>6} "
          f"{(f'{cpu:.1f}' if cpu is not None else '-'):>10} {r.get('window_s', 0):>8.2f}  {r.get('stopped_by', '')}")

summary = {}
print()
print("ratios per round (broker req/s over floor / moto req/s, same round) and their medians")
for w in workloads:
    for c in concs:
        key = w.replace("-", "_")
        vs_floor, vs_moto, p99 = [], [], []
        for rnd in rounds:
            b = pick("sts-bench", "broker", w, c, rnd)
            f = pick("sts-bench", "floor", "gst-mfa", c, rnd)
            m = pick("sts-bench", "moto", w, c, rnd)
            if b:
                p99.append(b["p99_ms"])
            vs_floor.append(b["rps"] / f["rps"] if b and f and f["rps"] else None)
            vs_moto.append(b["rps"] / m["rps"] if b and m and m["rps"] else None)
        fmt = lambda xs: " ".join("-" if x is None else f"{x:.3f}" for x in xs)
        print(f"  {w:<12} c{c:<3} vs floor: {fmt(vs_floor):<24} median {med(vs_floor)}   vs moto: {fmt(vs_moto):<28} median {med(vs_moto)}")
        summary[f"{key}_vs_floor_c{c}"] = med(vs_floor)
        summary[f"{key}_vs_moto_c{c}"] = med(vs_moto)
        summary[f"{key}_p99_ms_c{c}"] = med(p99)
        summary[f"{key}_rps_c{c}"] = med([pick("sts-bench", "broker", w, c, rnd)["rps"] for rnd in rounds if pick("sts-bench", "broker", w, c, rnd)])
for c in concs:
    gate_vs_floor, gate_p99, gate_rps = [], [], []
    for rnd in rounds:
        g = pick("sts-bench", "gate", "gci-session", c, rnd)
        f = pick("sts-bench", "floor", "gst-mfa", c, rnd)
        if g:
            gate_p99.append(g["p99_ms"])
            gate_rps.append(g["rps"])
            gate_vs_floor.append(g["rps"] / f["rps"] if f and f["rps"] else None)
    if gate_rps:
        print(f"  gate (gci-session through the gate to the floor) c{c} vs floor: {' '.join('-' if x is None else f'{x:.3f}' for x in gate_vs_floor)}  median {med(gate_vs_floor)}")
        summary[f"gate_vs_floor_c{c}"] = med(gate_vs_floor)
        summary[f"gate_p99_ms_c{c}"] = med(gate_p99)
        summary[f"gate_rps_c{c}"] = med(gate_rps)
for c in concs:
    fl = [pick("sts-bench", "floor", "gst-mfa", c, rnd) for rnd in rounds]
    wr = [pick("wrk", "floor", "gst-mfa", c, rnd) for rnd in rounds]
    summary[f"floor_rps_c{c}"] = med([f["rps"] for f in fl if f])
    summary[f"floor_p99_ms_c{c}"] = med([f["p99_ms"] for f in fl if f])
    gen_vs_wrk = [f["rps"] / w["rps"] if f and w and w["rps"] else None for f, w in zip(fl, wr)]
    summary[f"gen_vs_wrk_floor_c{c}"] = med(gen_vs_wrk)
    if any(x is not None for x in gen_vs_wrk):
        print(f"  generator / wrk on the floor c{c}: {' '.join('-' if x is None else f'{x:.3f}' for x in gen_vs_wrk)}  median {med(gen_vs_wrk)}")
errors = sum(r["errors"] for r in rows if r["label"] in ("broker", "floor", "gate"))
moto_errors = sum(r["errors"] for r in rows if r["label"] == "moto")
if errors:
    print()
    print(f"ERRORS: {errors} failed requests against the broker, the floor or the gate")
    for r in rows:
        if r["errors"] and r.get("first_error"):
            print(f"  {r['label']} {r['workload']} c{r['concurrency']} round {r['round']}: {r['first_error'][:300]}")
summary.update({
    "errors": errors,
    "moto_errors": moto_errors,
    "users": $USERS,
    "rss_mib": $RSS_MIB,
    "rss_start_mib": $RSS_START_MIB,
    "startup_s": $STARTUP_S,
    "provision_s": $PROVISION_S,
    "db_mib": $DB_MIB,
    "rounds": len(rounds),
    "duration_s": $DURATION,
    "threads": $THREADS,
    "results": sys.argv[1],
})
print(json.dumps(summary, sort_keys=True))
EOF
