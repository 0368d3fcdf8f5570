#!/usr/bin/env bash
# run-local.sh — `make run`: the daemon on deploy/local/backupd.yaml with a
# simulated live mesh volume set, all under ./var. Ctrl-C stops both; running
# it again continues from the same repository.
set -euo pipefail
cd "$(dirname "$0")/.."
B=bin/backupd
export BACKUPD_PASSWORD="${BACKUPD_PASSWORD:-demo-password}"
mkdir -p var/drills
if [ ! -f var/repo/config ]; then
	$B init --repo var/repo >/dev/null
	echo "created repository var/repo"
elif ! out=$($B snapshots --repo var/repo 2>&1 >/dev/null); then
	# An older repository format, another password, a damaged config.
	echo "run-local: var/repo cannot be opened: $out" >&2
	echo "run-local: remove var/repo (make clean) to start over with a new repository" >&2
	exit 1
fi
bin/simulate -root var/volumes -proxies 20 -consul 3 -scale 0.1 -interval 10s &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null || true' EXIT
# Let the simulator lay the volume set down before the first backup.
for _ in $(seq 1 100); do [ -f var/volumes/.workload-state.json ] && break; sleep 0.2; done
echo "metrics: http://127.0.0.1:9847/metrics   status: http://127.0.0.1:9847/"
$B run --config deploy/local/backupd.yaml "$@"
