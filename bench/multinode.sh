#!/usr/bin/env bash
# GetSessionToken with MFA (the gst-mfa workload of BENCHMARKS.md) against one node on the
# embedded SQLite store, one node on PostgreSQL + Redis, and three nodes on the same PostgreSQL +
# Redis, in one run, with the same generator and settings, rounds rotated.
#
# The users are provisioned once on SQLite (`admin bench-provision`, which writes through the
# SQLite store only) and copied into PostgreSQL (`admin copy-store`). The load always comes from
# three `sts-bench` processes, each with its own third of the users (so that no code is sent
# twice) and a third of the connections: against one node all three aim at it, against three
# nodes each aims at its own, so the client side costs the same in every case. Every window
# sends only valid, never-used codes; a non-2xx answer is an error.
#
# PostgreSQL (initdb, as the postgres user when root; fsync and synchronous_commit as shipped)
# and redis-server (no persistence) are started on free ports in the work directory and
# stopped at the end. Everything shares the machine's cores: these are figures for one box.
#
# Settings (environment):
#   BENCH_USERS        users provisioned (default 60000)
#   BENCH_DURATION     seconds per window (default 5)
#   BENCH_ROUNDS       rounds (default 3)
#   BENCH_CONCURRENCY  total connections, multiples of 3 (default "3 48")
#   BENCH_DIR          work directory (default target/bench-multinode)
#   BENCH_SKIP_BUILD=1 use the release binaries already in target/release
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
USERS=${BENCH_USERS:-60000}
DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONCURRENCY=${BENCH_CONCURRENCY:-"3 48"}
DIR=${BENCH_DIR:-$REPO/target/bench-multinode}

while IFS= read -r var; do unset "$var"; done < <(compgen -v | grep -E '^(STS_BROKER_|AWS_)' || true)

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
    else
        "$@"
    fi
}

PGBIN=/usr/lib/postgresql/$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)/bin
[[ -x $PGBIN/initdb ]] || PGBIN=$(dirname "$(command -v initdb)")
[[ -x $PGBIN/postgres ]] || { echo "error: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "error: redis-server is not installed" >&2; exit 1; }

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries"
    cargo build --release --quiet && cargo build --release --quiet -p sts-broker-bench
fi
BROKER="$REPO/target/release/sts-broker"
GEN="$REPO/target/release/sts-bench"

rm -rf "$DIR"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
PIDS=()
PG_DIR=""
cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    # PostgreSQL runs under setpriv, a child of the job: stopped through its data dir.
    if [[ -n $PG_DIR && -f $PG_DIR/data/postmaster.pid ]]; then
        as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null
    fi
    [[ -n $PG_DIR ]] && rm -rf "$PG_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Engines: as root, under /tmp, which the postgres user can reach.
PG_DIR=$(mktemp -d "/tmp/sts-bench-pg.XXXXXX")
chmod 755 "$PG_DIR"
[[ $(id -u) -ne 0 ]] || chown postgres: "$PG_DIR"
as_pg "$PGBIN/initdb" -D "$PG_DIR/data" --auth=trust --username=sts >/dev/null
PG_PORT=$(free_port)
as_pg "$PGBIN/postgres" -D "$PG_DIR/data" -p "$PG_PORT" -k "$PG_DIR" -c listen_addresses=127.0.0.1 \
    >"$DIR/postgres.log" 2>&1 &
PIDS+=("$!")
REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >"$DIR/redis.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 300); do
    (: </dev/tcp/127.0.0.1/"$PG_PORT") 2>/dev/null && (: </dev/tcp/127.0.0.1/"$REDIS_PORT") 2>/dev/null && break
    sleep 0.1
done
STORE_URL="postgres://sts@127.0.0.1:$PG_PORT/postgres"
REPLAY_URL="redis://127.0.0.1:$REDIS_PORT"
log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on $PG_PORT, $(redis-server --version | awk '{print $3}') on $REDIS_PORT"

# ---------------------------------------------------------------------------------------------
# Users: provisioned on SQLite, copied into PostgreSQL; the credentials split in three.
DATA="$DIR/sqlite"
CREDS="$DIR/creds.csv"
log "provisioning $USERS users"
"$BROKER" admin bench-provision --data-dir "$DATA" --users "$USERS" --out "$CREDS" >&2
log "copying the store into PostgreSQL"
"$BROKER" admin copy-store --from-data-dir "$DATA" --to "$STORE_URL" >&2
for part in 0 1 2; do
    awk -v part="$part" 'NR == 1 || (NR - 2) % 3 == part' "$CREDS" >"$DIR/creds-$part.csv"
    chmod 600 "$DIR/creds-$part.csv"
done

# ---------------------------------------------------------------------------------------------
# Nodes: one on SQLite, three on PostgreSQL + Redis (each its own data dir with the master key).
url_from_log() {
    local file=$1 pid=$2 url=""
    for _ in $(seq 1 600); do
        url=$(sed -n 's|^sts-broker listening on \(http://[0-9.:]*\).*|\1|p' "$file" | head -n1)
        [[ -n $url ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; echo "error: a node exited" >&2; return 1; }
        sleep 0.1
    done
    [[ -n $url ]] || { echo "error: no address in $file" >&2; return 1; }
    echo "$url"
}
"$BROKER" serve --listen 127.0.0.1:0 --data-dir "$DATA" >"$DIR/sqlite.log" 2>&1 &
PIDS+=("$!")
SQLITE_PID=$!
SQLITE_URL=$(url_from_log "$DIR/sqlite.log" "$SQLITE_PID")
PG_URLS=()
PG_PIDS=()
for n in 1 2 3; do
    mkdir -m 700 "$DIR/node$n"
    install -m 600 "$DATA/master.key" "$DIR/node$n/master.key"
    "$BROKER" serve --listen 127.0.0.1:0 --data-dir "$DIR/node$n" --store-url "$STORE_URL" \
        --replay-url "$REPLAY_URL" >"$DIR/node$n.log" 2>&1 &
    PIDS+=("$!")
    PG_PIDS+=("$!")
    PG_URLS+=("$(url_from_log "$DIR/node$n.log" "$!")")
done
for url in "$SQLITE_URL" "${PG_URLS[@]}"; do
    "$GEN" wait --url "$url" --creds "$DIR/creds-0.csv" >/dev/null
done
log "SQLite node $SQLITE_URL; PostgreSQL + Redis nodes ${PG_URLS[*]}"

# ---------------------------------------------------------------------------------------------
RESULTS="$DIR/results.jsonl"
: >"$RESULTS"
# One window: three generators at once, each a third of the users and connections.
window() {
    local round=$1 target=$2 conc=$3 urls=() pids=() part
    case $target in
        sqlite) urls=("$SQLITE_URL" "$SQLITE_URL" "$SQLITE_URL") ;;
        pg1) urls=("${PG_URLS[0]}" "${PG_URLS[0]}" "${PG_URLS[0]}") ;;
        pg3) urls=("${PG_URLS[@]}") ;;
    esac
    for part in 0 1 2; do
        "$GEN" run --url "${urls[$part]}" --creds "$DIR/creds-$part.csv" --workload gst-mfa \
            -c $((conc / 3)) -t 1 -d "$DURATION" --min-requests $((USERS / 12)) --label "$target" \
            >"$DIR/w-$part.json" &
        pids+=("$!")
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    python3 - "$round" "$target" "$conc" "$DIR"/w-0.json "$DIR"/w-1.json "$DIR"/w-2.json >>"$RESULTS" <<'EOF'
import json, sys
rnd, target, conc = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
parts = [json.load(open(p)) for p in sys.argv[4:]]
done = sum(p["requests"] for p in parts) if all("requests" in p for p in parts) else None
print(json.dumps({
    "round": rnd, "target": target, "concurrency": conc,
    "rps": sum(p["rps"] for p in parts),
    "p50_ms": max(p["p50_ms"] for p in parts), "p99_ms": max(p["p99_ms"] for p in parts),
    "mean_ms": sum(p["mean_ms"] * p["requests"] for p in parts) / max(1, sum(p["requests"] for p in parts)),
    "errors": sum(p["errors"] for p in parts), "requests": done,
    "window_s": max(p.get("window_s", 0) for p in parts),
    "stopped_by": sorted({p.get("stopped_by", "") for p in parts}),
    "first_error": next((p.get("first_error") for p in parts if p.get("first_error")), None),
}))
EOF
    tail -n 1 "$RESULTS" >&2
}

read -r -a CONC_LIST <<<"$CONCURRENCY"
TARGETS=(sqlite pg1 pg3)
log "$ROUNDS round(s) x ${DURATION} s windows; concurrency: $CONCURRENCY"
for ((round = 1; round <= ROUNDS; round++)); do
    for ((i = 0; i < 3; i++)); do
        target=${TARGETS[$(((i + round - 1) % 3))]}
        for conc in "${CONC_LIST[@]}"; do
            window "$round" "$target" "$conc"
        done
    done
done

python3 - "$RESULTS" "$CONCURRENCY" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
concs = [int(c) for c in sys.argv[2].split()]
rounds = sorted({r["round"] for r in rows})
def pick(t, c, n):
    return next((r for r in rows if (r["target"], r["concurrency"], r["round"]) == (t, c, n)), None)
def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None
print()
print(f"{'round':>5} {'target':<7} {'conc':>4} {'req/s':>8} {'mean ms':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
for r in rows:
    print(f"{r['round']:>5} {r['target']:<7} {r['concurrency']:>4} {r['rps']:>8.0f} {r['mean_ms']:>7.2f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['errors']:>6}")
summary = {}
print()
for c in concs:
    for t in ("sqlite", "pg1", "pg3"):
        summary[f"{t}_rps_c{c}"] = med([pick(t, c, n)["rps"] for n in rounds if pick(t, c, n)])
        summary[f"{t}_mean_ms_c{c}"] = med([pick(t, c, n)["mean_ms"] for n in rounds if pick(t, c, n)])
        summary[f"{t}_p50_ms_c{c}"] = med([pick(t, c, n)["p50_ms"] for n in rounds if pick(t, c, n)])
        summary[f"{t}_p99_ms_c{c}"] = med([pick(t, c, n)["p99_ms"] for n in rounds if pick(t, c, n)])
    for t in ("pg1", "pg3"):
        ratios = [pick(t, c, n)["rps"] / pick("sqlite", c, n)["rps"] for n in rounds
                  if pick(t, c, n) and pick("sqlite", c, n) and pick("sqlite", c, n)["rps"]]
        summary[f"{t}_vs_sqlite_c{c}"] = med(ratios)
        print(f"c{c:<3} {t} / sqlite req/s per round: {' '.join(f'{x:.3f}' for x in ratios)}  median {med(ratios)}")
    for stat in ("mean", "p50"):
        added = [pick("pg1", c, n)[f"{stat}_ms"] - pick("sqlite", c, n)[f"{stat}_ms"] for n in rounds
                 if pick("pg1", c, n) and pick("sqlite", c, n)]
        summary[f"pg1_added_{stat}_ms_c{c}"] = med(added)
        print(f"c{c:<3} added {stat} latency per MFA attempt, one PostgreSQL + Redis node vs SQLite: {med(added)} ms")
summary["errors"] = sum(r["errors"] for r in rows)
summary["users"] = len(open(sys.argv[1].rsplit("/", 1)[0] + "/creds.csv").readlines()) - 1
summary["rounds"] = len(rounds)
print(json.dumps(summary, sort_keys=True))
EOF
