#!/usr/bin/env bash
# Runs README.md's own shell blocks as a new user would (ci/readme_blocks.py splits them): the
# servers (background blocks) from the repository, everything else in one shell from an
# unrelated empty folder, in bash and in zsh, twice each against the same data dir, with stale
# AWS variables (a missing profile, another region, a dead session token) already set.
#
# Needs on PATH: cargo (target/release built), aws, python3, curl, nginx, zsh, redis-server; and
# PostgreSQL (initdb, postgres: on PATH or in Debian's /usr/lib/postgresql/<version>/bin). The
# ports the README uses (8080, 8081, 8088, 9000, 55432, 56379, 8091-8094) must be free.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/readme-check.XXXXXX")
BLOCKS="$WORK/blocks"
python3 "$REPO/ci/readme_blocks.py" "$REPO/README.md" "$BLOCKS"
# cargo and rustup find their homes through HOME, which each run replaces.
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"

GROUPS_RUNNING=()
stop_servers() {
    local pgid
    for pgid in "${GROUPS_RUNNING[@]}"; do
        kill -TERM -- "-$pgid" 2>/dev/null || true
    done
    for pgid in "${GROUPS_RUNNING[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 -- "-$pgid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pgid" 2>/dev/null || true
    done
    GROUPS_RUNNING=()
}
cleanup() {
    local rc=$?
    stop_servers
    if [[ $rc -ne 0 ]]; then
        for log in "$WORK"/*.log; do
            [[ -e $log ]] || continue
            echo "--- last lines of $(basename "$log")"
            tail -n 30 "$log"
        done
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

port_open() {
    python3 -c 'import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))))' "$1"
}

for port_file in "$BLOCKS"/background-*.port; do
    port=$(cat "$port_file")
    if port_open "$port"; then
        echo "error: port $port, which README.md uses, is already taken" >&2
        exit 1
    fi
done

for shell in ${README_CHECK_SHELLS:-bash zsh}; do
    command -v "$shell" >/dev/null || { echo "error: $shell is not installed" >&2; exit 1; }
    export HOME="$WORK/home-$shell"
    mkdir -p "$HOME"
    for run in 1 2; do
        echo "=== README in $shell, run $run"
        for block in "$BLOCKS"/background-*.sh; do
            port=$(cat "${block%.sh}.port")
            log="$WORK/$shell-$run-$(basename "${block%.sh}").log"
            (cd "$REPO" && exec setsid "$shell" "$block" >"$log" 2>&1 </dev/null) &
            GROUPS_RUNNING+=("$!")
            for _ in $(seq 1 1200); do
                port_open "$port" && break
                if ! kill -0 "$!" 2>/dev/null; then
                    echo "error: $(basename "$block") exited before port $port opened" >&2
                    exit 1
                fi
                sleep 0.1
            done
            port_open "$port" || { echo "error: nothing on port $port after 120 s" >&2; exit 1; }
        done
        folder=$(mktemp -d "$WORK/elsewhere.XXXXXX")
        (
            cd "$folder"
            env AWS_PROFILE=stale-profile AWS_DEFAULT_PROFILE=stale-profile AWS_REGION=eu-west-3 \
                AWS_SESSION_TOKEN=stale-token "$shell" "$BLOCKS/flow.sh"
        ) 2>&1 | tee "$WORK/$shell-$run-flow.log"
        status=${PIPESTATUS[0]}
        if [[ $status -ne 0 ]]; then
            echo "error: README.md's blocks failed in $shell (run $run)" >&2
            exit 1
        fi
        stop_servers
    done
done
echo "README.md: every block ran in bash and zsh, twice each"
