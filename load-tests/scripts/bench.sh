#!/usr/bin/env bash
# Runs the benchmarks recorded in docs/benchmarks.md, in release mode, on this
# machine, against hubs (and a redis-server) the harness starts itself on
# 127.0.0.1. Each run is bounded (about 2 minutes at most).
#
#   load-tests/scripts/bench.sh                 all of them, in order
#   load-tests/scripts/bench.sh idle storm      only these
#
# Names: pair, pair-20k, pair-patient, pair-admin, pair-2node-pg,
#        pair-2node-pg-20k (the consultation's shape: 1,000 rooms, a provider
#        and a patient each; see docs/benchmarks.md, first table),
#        idle, fanout, fanout-wide, fanout-wide-tmpfs, fanout-2node,
#        fanout-2node-wide, fanout-2node-pg, fanout-2node-pg-wide, persist,
#        storm, dashboard, abuse (the honest 1:1 load with and without
#        attackers, three rounds), append (criterion, the store alone)
#
# Results go to load-tests/results/<name>.json, reports (Markdown + SVG) to
# load-tests/results/<name>/. Knobs (environment): PG_URL for fanout-2node-pg
# (default postgres://postgres@127.0.0.1:5432/consult_load, created if
# missing), SKIP_BUILD=1 to reuse the release binaries. Before each run the
# script waits (up to QUIET_WAIT seconds, default 600) until the machine is
# at most QUIET_BUSY percent busy (default 15): it is shared with builds.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
HUB=$TARGET_DIR/release/consult-hub
LOAD=$TARGET_DIR/release/consult-load
OUT=$ROOT/load-tests/results
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/consult_load}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
	cargo build --release -p consult-hub -p consult-load
fi
mkdir -p "$OUT"
# The harness raises its own soft limit to the hard one; the hubs it starts
# inherit it. One process may hold at most the hard limit (20,000 here).
ulimit -n "$(ulimit -Hn)"

# Percent of CPU time busy over the next 3 seconds, machine-wide.
busy_percent() {
	local a b
	read -r -a a < <(head -n1 /proc/stat)
	sleep 3
	read -r -a b < <(head -n1 /proc/stat)
	local idle=$(((b[4] + b[5]) - (a[4] + a[5]))) total=0 i
	for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
	echo $((100 - 100 * idle / (total > 0 ? total : 1)))
}

# The machine is shared (builds, other test runs): wait up to QUIET_WAIT
# seconds (default 600) for it to be mostly idle, so the numbers are ours.
wait_quiet() {
	local waited=0 busy
	while busy=$(busy_percent) && ((busy > ${QUIET_BUSY:-15} && waited < ${QUIET_WAIT:-600})); do
		echo "    machine ${busy}% busy; waiting"
		waited=$((waited + 3))
	done
	echo "    machine ${busy}% busy before the run"
}

run() {
	local name=$1
	shift
	echo
	echo "==> $name: consult-load $*"
	wait_quiet
	echo "    load average: $(cut -d' ' -f1-3 /proc/loadavg), open-file limit $(ulimit -n)"
	timeout 300 "$LOAD" "$@" --spawn-hub "$HUB" --out "$OUT/$name.json" --report-dir "$OUT/$name"
}

ensure_pg_database() {
	local db=${PG_URL##*/}
	local admin=${PG_URL%/*}/postgres
	if ! psql "$admin" -tAc "select 1 from pg_database where datname = '$db'" | grep -q 1; then
		psql "$admin" -c "create database $db" >/dev/null
	fi
	# Start every run from an empty schema.
	PGOPTIONS='-c client_min_messages=warning' \
		psql "$PG_URL" -qc 'drop schema public cascade; create schema public' >/dev/null
}

bench() {
	case $1 in
	pair)
		run pair fanout --rate 5000 --duration-secs 20
		;;
	pair-normal)
		run pair-normal fanout --rate 5000 --duration-secs 20 \
			--hub-env CONSULT_DATABASE__SQLITE_SYNCHRONOUS=normal
		;;
	pair-20k)
		run pair-20k fanout --rate 20000 --duration-secs 15
		;;
	pair-patient)
		run pair-patient fanout --rate 5000 --duration-secs 20 --patients-send
		;;
	pair-admin)
		run pair-admin fanout --members 2 --rate 5000 --duration-secs 20
		;;
	abuse)
		run abuse abuse --rounds 3 --duration-secs 15
		;;
	pair-2node-pg)
		ensure_pg_database
		run pair-2node-pg fanout --nodes 2 --spawn-redis --database "$PG_URL" \
			--rate 10000 --duration-secs 15
		;;
	pair-2node-pg-20k)
		ensure_pg_database
		run pair-2node-pg-20k fanout --nodes 2 --spawn-redis --database "$PG_URL" \
			--rate 20000 --duration-secs 15
		;;
	idle)
		run idle idle --clients 19000 --rooms 1000 --processes 3 --sources 8 \
			--connect-concurrency 100 --settle-secs 5 --hold-secs 20
		;;
	fanout)
		run fanout fanout --rooms 100 --members 4 --rate 5000 --duration-secs 20 --senders-join false
		;;
	fanout-wide)
		run fanout-wide fanout --rooms 100 --members 10 --rate 2000 --duration-secs 20 --senders-join false
		;;
	fanout-2node)
		run fanout-2node fanout --nodes 2 --spawn-redis --rooms 100 --members 4 \
			--rate 5000 --duration-secs 20 --senders-join false
		;;
	fanout-2node-wide)
		run fanout-2node-wide fanout --nodes 2 --spawn-redis --rooms 100 --members 10 \
			--rate 2000 --duration-secs 20 --senders-join false
		;;
	fanout-wide-tmpfs)
		# The same as fanout-wide with the hub's SQLite file in memory: shows
		# what the disk adds to the latency tail.
		TMPDIR=/dev/shm run fanout-wide-tmpfs fanout --rooms 100 --members 10 \
			--rate 2000 --duration-secs 20 --senders-join false
		;;
	fanout-2node-pg)
		ensure_pg_database
		run fanout-2node-pg fanout --nodes 2 --spawn-redis --database "$PG_URL" \
			--rooms 100 --members 4 --rate 5000 --duration-secs 20 --senders-join false
		;;
	fanout-2node-pg-wide)
		ensure_pg_database
		run fanout-2node-pg-wide fanout --nodes 2 --spawn-redis --database "$PG_URL" \
			--rooms 100 --members 10 --rate 2000 --duration-secs 20 --senders-join false
		;;
	persist)
		run persist fanout --rooms 1000 --members 1 --rate 20000 --duration-secs 10 --senders-join false
		;;
	storm)
		run storm storm --clients 19000 --rooms 1000 --providers 10 --rate 1000 \
			--processes 3 --sources 8 --connect-concurrency 1000 \
			--before-secs 5 --after-secs 5 --finish-timeout-secs 60
		;;
	append)
		# The store alone (criterion): group commit without the network.
		wait_quiet
		cargo bench -p consult-hub --bench append
		;;
	dashboard)
		run dashboard dashboard --watchers 50 --pairs 20 --cycles 1000
		;;
	*)
		echo "unknown benchmark: $1" >&2
		exit 2
		;;
	esac
}

if [[ $# -eq 0 ]]; then
	set -- pair pair-20k pair-patient pair-admin pair-2node-pg pair-2node-pg-20k idle fanout fanout-wide fanout-wide-tmpfs fanout-2node fanout-2node-wide \
		fanout-2node-pg fanout-2node-pg-wide persist storm dashboard abuse append
fi
for name in "$@"; do
	bench "$name"
done
