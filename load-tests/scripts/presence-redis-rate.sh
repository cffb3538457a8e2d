#!/usr/bin/env bash
# Redis commands per second with N idle users on M hub nodes: starts a
# private redis-server (port PORT, default 6391), samples its INFO
# commandstats and CPU every 5 s while `consult-load idle` connects the users
# and holds them, then prints the rate of each command per 5-second window
# (load-tests/scripts/redis_rates.py). The steady state is the flat windows
# after the connect burst; the sampler's own INFO and PING are 0.6/s of it.
#
#   load-tests/scripts/presence-redis-rate.sh CLIENTS NODES PROCESSES HOLD_SECS TAG
#   load-tests/scripts/presence-redis-rate.sh 100000 6 13 60 100k
#
# Uses target/release/consult-hub and consult-load (build them first).
# Writes load-tests/results/presence/{redis-samples,redis-rates}-TAG.txt and
# idle-TAG.json.
set -euo pipefail
CLIENTS=$1 NODES=$2 PROCS=$3 HOLD=$4 TAG=$5
PORT=${PORT:-6391}
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
OUT=load-tests/results/presence
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
redis-server --port "$PORT" --save '' --appendonly no --daemonize yes --logfile "/tmp/redis-$TAG.log" >/dev/null
trap 'redis-cli -p "$PORT" SHUTDOWN NOSAVE >/dev/null 2>&1 || true' EXIT
sleep 0.5
redis-cli -p "$PORT" CONFIG RESETSTAT >/dev/null
(
	while redis-cli -p "$PORT" PING >/dev/null 2>&1; do
		echo "T $(date +%s.%N)"
		redis-cli -p "$PORT" INFO commandstats | grep cmdstat_
		redis-cli -p "$PORT" INFO cpu | grep used_cpu_
		sleep 5
	done
) >"$OUT/redis-samples-$TAG.txt" 2>&1 &
"$TARGET_DIR/release/consult-load" idle --spawn-hub "$TARGET_DIR/release/consult-hub" \
	--nodes "$NODES" --redis-url "redis://127.0.0.1:$PORT" --clients "$CLIENTS" \
	--rooms $((CLIENTS / 20)) --processes "$PROCS" --connect-concurrency 200 \
	--settle-secs 5 --hold-secs "$HOLD" --quiet --out "$OUT/idle-$TAG.json"
redis-cli -p "$PORT" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
wait
python3 load-tests/scripts/redis_rates.py "$OUT/redis-samples-$TAG.txt" | tee "$OUT/redis-rates-$TAG.txt"
