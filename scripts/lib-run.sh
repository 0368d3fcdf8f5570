# lib-run.sh — the pieces run-local.sh and run-minio.sh share; sourced from
# the repository's root, after `set -euo pipefail`. It sets an EXIT trap:
# add to what it undoes with on_exit, not with another trap.
B=bin/backupd
PROG=$(basename "$0" .sh)
export BACKUPD_PASSWORD="${BACKUPD_PASSWORD:-demo-password}"

_cleanups=()
# on_exit CMD: run CMD when the script exits, the last added first.
on_exit() { _cleanups+=("$1"); }
_run_cleanups() {
	local i
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[i]}" || true; done
}
trap _run_cleanups EXIT

# ensure_repo REPO HINT: create the repository REPO unless it opens. One
# that exists but does not open (an older format, another password, a
# damaged config) stops the script, with HINT on how to start over.
ensure_repo() {
	local repo=$1 hint=$2 out initOut
	if out=$($B snapshots --repo "$repo" 2>&1 >/dev/null); then
		return 0
	fi
	if initOut=$($B init --repo "$repo" 2>&1 >/dev/null); then
		echo "created repository $repo"
		return 0
	fi
	echo "$PROG: $repo cannot be opened: $out" >&2
	# For a bucket, also why init failed (for a directory, it already exists).
	case $repo in s3://*) echo "$PROG: nor created: $initOut" >&2 ;; esac
	echo "$PROG: $hint" >&2
	exit 1
}

# start_simulator: the simulated live mesh volume set under var/volumes,
# stopped on exit; returns once it is laid down for the first backup.
start_simulator() {
	bin/simulate -root var/volumes -proxies 20 -consul 3 -scale 0.1 -interval 10s &
	local sim=$!
	on_exit "kill $sim 2>/dev/null; wait $sim 2>/dev/null"
	for _ in $(seq 1 100); do [ -f var/volumes/.workload-state.json ] && break; sleep 0.2; done
}
