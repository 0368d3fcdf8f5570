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
fi
$B simulate --root var/volumes --proxies 20 --consul 3 --scale 0.1 --interval 10s &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null || true' EXIT
# Let the simulator lay the volume set down before the first backup.
for _ in $(seq 1 100); do [ -f var/volumes/.workload-state.json ] && break; sleep 0.2; done
echo "metrics: http://127.0.0.1:9847/metrics   status: http://127.0.0.1:9847/"
$B run --config deploy/local/backupd.yaml "$@"
