#!/usr/bin/env bash
# run-minio.sh — `make run-minio`: like `make run`, but the repository is in
# a bucket of a local MinIO (deploy/local/backupd-minio.yaml): MinIO on
# 127.0.0.1:9000 with its data under ./var/minio, the simulated mesh volume
# set, `backupd init` of s3://backupd/mesh if it does not open, then the
# daemon. Ctrl-C stops all three; running it again continues from the same
# bucket.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-run.sh
./scripts/install-tools.sh minio
export PATH="${BACKUPD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/backupd/bin}:$PATH"

# Fixed development credentials: this MinIO listens on loopback only and
# holds demo data. The daemon's config reads them from MINIO_ROOT_USER and
# MINIO_ROOT_PASSWORD (access_key_id_env, secret_access_key_env); the
# commands run here (init, snapshots) take them from the AWS variables, as
# the AWS SDK does.
export MINIO_ROOT_USER="${MINIO_ROOT_USER:-backupd-dev}"
export MINIO_ROOT_PASSWORD="${MINIO_ROOT_PASSWORD:-backupd-dev-password}"
export AWS_ACCESS_KEY_ID="$MINIO_ROOT_USER" AWS_SECRET_ACCESS_KEY="$MINIO_ROOT_PASSWORD"
export AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_REGION=us-east-1

if (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null; then
	echo "$PROG: 127.0.0.1:9000 is taken: stop what listens there (another MinIO?)" >&2
	exit 1
fi
# A directory in MinIO's data directory when it starts is a bucket: this
# makes the bucket "backupd" without an S3 client (backupd creates none).
mkdir -p var/minio/backupd var/drills
minio server --quiet --address 127.0.0.1:9000 --console-address 127.0.0.1:9001 var/minio >var/minio.log 2>&1 &
minio=$!
on_exit "kill $minio 2>/dev/null; wait $minio 2>/dev/null"
for _ in $(seq 1 100); do
	(exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null && break
	kill -0 $minio 2>/dev/null || { echo "$PROG: minio exited; var/minio.log says:" >&2; tail -20 var/minio.log >&2; exit 1; }
	sleep 0.2
done
echo "minio: http://127.0.0.1:9000 (console http://127.0.0.1:9001, user $MINIO_ROOT_USER), data in var/minio, log var/minio.log"

ensure_repo s3://backupd/mesh "remove var/minio (or its backupd/mesh) to start over with a new repository"
start_simulator
echo "metrics: http://127.0.0.1:9847/metrics   status: http://127.0.0.1:9847/"
$B run --config deploy/local/backupd-minio.yaml "$@"
