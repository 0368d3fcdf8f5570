#!/usr/bin/env bash
# run-local.sh — `make run`: the daemon on deploy/local/backupd.yaml with a
# simulated live mesh volume set, all under ./var. Ctrl-C stops both; running
# it again continues from the same repository.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-run.sh
mkdir -p var/drills
ensure_repo var/repo "remove var/repo (make clean) to start over with a new repository"
start_simulator
echo "metrics: http://127.0.0.1:9847/metrics   status: http://127.0.0.1:9847/"
$B run --config deploy/local/backupd.yaml "$@"
