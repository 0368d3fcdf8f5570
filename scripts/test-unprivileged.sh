#!/usr/bin/env bash
# Runs the engine's end-to-end tests (backupd/enginetest) and the daemon's
# (backupd/daemon) once more as the user nobody when `make test` runs as root, as CI does. Root reads and
# writes through any permission, so what only bites other users (a restore
# rerun into directories an earlier run left read-only, an unreadable
# source, restores without chown) would otherwise go untested.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	exit 0 # not root: the normal run already was unprivileged
fi
if ! command -v setpriv >/dev/null 2>&1 || ! id nobody >/dev/null 2>&1; then
	echo "test-unprivileged: no setpriv (util-linux) or no user nobody; not run" >&2
	exit 0
fi
GO=${GO:-go}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/tmp"
chmod 755 "$dir"
chmod 1777 "$dir/tmp"
"$GO" test -c -o "$dir/enginetest.test" ./backupd/enginetest
"$GO" test -c -o "$dir/daemon.test" ./backupd/daemon
cd "$dir"
for pkg in enginetest daemon; do
	echo "test-unprivileged: backupd/$pkg as nobody"
	TMPDIR="$dir/tmp" setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
		"./$pkg.test" -test.count=1 -test.timeout=10m
done
