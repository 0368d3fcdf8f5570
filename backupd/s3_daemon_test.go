package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/meshbackup/backupd/backupd/backend/s3/s3test"
	"github.com/meshbackup/backupd/bench/workload"
)

// Daemon-level tests on an s3:// repository in a real MinIO (issue 11):
// the daemon's cycles through the config's s3 block, and an outage of the
// store in the middle of a backup.

// s3CLI returns a command line for a fresh bucket of srv, reached as the
// AWS conventions say, with nothing read from the machine's AWS files.
func s3CLI(t *testing.T, srv *s3test.Server) *cli {
	t.Helper()
	id, secret := srv.Credentials()
	c := newCLI(t)
	c.repo = "s3://" + srv.NewBucket(t) + "/mesh"
	c.env = append(c.env, "BACKUPD_REPOSITORY="+c.repo, "AWS_ENDPOINT_URL="+srv.Endpoint(), "AWS_REGION="+s3test.Region,
		"AWS_ACCESS_KEY_ID="+id, "AWS_SECRET_ACCESS_KEY="+secret, "AWS_PROFILE=",
		"AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent")
	return c
}

// mustRun runs backupd and fails the test unless it exits 0.
func (c *cli) mustRun(args ...string) string {
	c.t.Helper()
	out, stderr, code := c.run(nil, args...)
	if code != 0 {
		c.t.Fatalf("backupd %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	return out
}

// daemonEnv is the daemon's environment: no AWS_* variable (the config's
// s3 block says where the store is and which variables hold the keys).
func daemonEnv(srv *s3test.Server) []string {
	id, secret := srv.Credentials()
	env := []string{"BACKUPD_PASSWORD=correct horse", "TEST_S3_KEY_ID=" + id, "TEST_S3_SECRET=" + secret,
		"AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "HOME=" + os.TempDir()}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "BACKUPD_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

// writeS3DaemonConfig writes a config whose repository "bucket" is c's
// s3:// repository on srv, with second-level schedules.
func writeS3DaemonConfig(t *testing.T, srv *s3test.Server, c *cli, src, rpo string) string {
	t.Helper()
	cfg := fmt.Sprintf(`repositories:
  - name: bucket
    path: %s
    password_env: BACKUPD_PASSWORD
    timeout: 3s
    uploads: 2
    s3:
      endpoint: %s
      path_style: "true"
      access_key_id_env: TEST_S3_KEY_ID
      secret_access_key_env: TEST_S3_SECRET
policies:
  - name: mesh
    source: %s
    repository: bucket
    schedule: "@every 2s"
    rpo: %s
    rto: 30s
    retention: {keep_last: 2}
    drill: {schedule: "@every 3s"}
    verify: {schedule: "@every 3s", read_share: 1}
scheduler:
  prune_grace: 1s
`, c.repo, srv.Endpoint(), src, rpo)
	p := filepath.Join(t.TempDir(), "backupd.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (d *daemonProc) get(path string) string {
	d.t.Helper()
	resp, err := http.Get("http://" + d.addr + path)
	if err != nil {
		d.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatalf("GET %s: %v", path, err)
	}
	return string(b)
}

func (d *daemonProc) stop() {
	d.t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		d.t.Fatalf("SIGTERM: daemon did not exit 0: %v\n%s", err, tail(d.logs(), 3000))
	}
}

// s3Snapshots lists the snapshots through a subprocess (the in-process
// helpers have no AWS environment).
func (c *cli) s3Snapshots() []snapshotJSON {
	c.t.Helper()
	var snaps []snapshotJSON
	if err := json.Unmarshal([]byte(c.mustRun("snapshots", "--json")), &snaps); err != nil {
		c.t.Fatal(err)
	}
	return snaps
}

var bucketRepo = map[string]string{"repository": "bucket"}

// The daemon on a bucket: backups (with retention and prune), a restore
// drill and a verify run succeed; the storage metrics count the bucket's
// operations; its size is reported and its free space is not; neither the
// status API nor the logs show the secret key.
func TestS3DaemonRoundTrip(t *testing.T) {
	srv := s3test.StartMinIO(t)
	c := s3CLI(t, srv)
	src := genVolume(t, workload.Options{Proxies: 3, ConsulServers: 1, Scale: 0.03, Seed: 11})
	c.mustRun("init")
	cfg := writeS3DaemonConfig(t, srv, c, src, "30s")
	d := startDaemon(t, &cli{t: t, env: daemonEnv(srv)}, cfg, freePort(t))
	fams := d.waitFor("three backups, a drill and a verify on the bucket", 60*time.Second, func(f map[string]*dto.MetricFamily) bool {
		b, _ := value(f, "backupd_backup_runs_total", mesh)
		dr, _ := value(f, "backupd_restore_drills_within_rto_total", mesh)
		v, _ := value(f, "backupd_verify_runs_total", bucketRepo)
		return b >= 3 && dr >= 1 && v >= 1
	})
	for _, name := range []string{"backupd_backup_failures_total", "backupd_verify_failures_total", "backupd_restore_failures_total"} {
		if v, _ := value(fams, name, nil); v != 0 {
			t.Errorf("%s = %v, want 0\n%s", name, v, tail(d.logs(), 3000))
		}
	}
	if v, _ := value(fams, "backupd_last_backup_success_timestamp_seconds", mesh); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last success %v is not recent", v)
	}
	for _, op := range []string{"save", "load", "stat", "list", "remove"} {
		if v, _ := value(fams, "backupd_storage_operations_total", map[string]string{"repository": "bucket", "op": op, "result": "ok"}); v == 0 {
			t.Errorf("storage_operations_total{op=%q,result=ok} = 0", op)
		}
	}
	if v, ok := value(fams, "backupd_repository_size_bytes", bucketRepo); !ok || v <= 0 {
		t.Errorf("repository_size_bytes = %v (present %v)", v, ok)
	}
	if v, ok := value(fams, "backupd_repository_up", bucketRepo); !ok || v != 1 {
		t.Errorf("repository_up = %v (present %v)", v, ok)
	}
	if _, ok := fams["backupd_repository_free_bytes"]; ok {
		t.Errorf("repository_free_bytes has series for a bucket: %v", fams["backupd_repository_free_bytes"])
	}
	_, secret := srv.Credentials()
	status := d.get("/api/v1/status")
	if !strings.Contains(status, `"repository": "bucket"`) || strings.Contains(status, secret) {
		t.Errorf("status (wants the repository, not the secret):\n%s", status)
	}
	d.stop()
	if strings.Contains(d.logs(), secret) || strings.Contains(d.logs(), "correct horse") {
		t.Error("a secret in the daemon's logs")
	}
	// Retention ran on the bucket: at most keep_last 2 snapshots are left,
	// and the newest restores byte-exact.
	if snaps := c.s3Snapshots(); len(snaps) == 0 || len(snaps) > 2 {
		t.Errorf("%d snapshots after retention keep_last 2", len(snaps))
	}
	target := filepath.Join(t.TempDir(), "restore")
	c.mustRun("restore", "--target", target, "latest")
	if diff := workload.Diff(manifest(t, src), manifest(t, target), true); len(diff) > 0 {
		t.Fatalf("restore differs:\n%s", strings.Join(diff, "\n"))
	}
	c.mustRun("check", "--read-data")
}
