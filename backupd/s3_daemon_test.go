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
    retry_for: 2s # shorter than TestS3DaemonStoreDownMidBackup's outage, which fails the run
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
	c := s3CLI(t, srv, "mesh")
	src := genVolume(t, workload.Options{Proxies: 3, ConsulServers: 1, Scale: 0.03, Seed: 11})
	c.mustRun("init")
	cfg := writeS3DaemonConfig(t, srv, c, src, "30s")
	d := startDaemon(t, &cli{t: t, env: daemonEnv(srv)}, cfg, freePort(t))
	// Retention is postponed while a drill or verify run holds the
	// repository, so the wait is for the snapshot gauge to come down to
	// keep_last after three backups, not for a count of runs.
	fams := d.waitFor("three backups, retention, a drill and a verify on the bucket", 90*time.Second, func(f map[string]*dto.MetricFamily) bool {
		b, _ := value(f, "backupd_backup_runs_total", mesh)
		dr, _ := value(f, "backupd_restore_drills_within_rto_total", mesh)
		v, _ := value(f, "backupd_verify_runs_total", bucketRepo)
		n, ok := value(f, "backupd_repository_snapshots", map[string]string{"repository": "bucket", "policy": "mesh"})
		return b >= 3 && dr >= 1 && v >= 1 && ok && n >= 1 && n <= 2
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
	// Retention ran on the bucket: keep_last 2 snapshots are left, plus one
	// for each backup after the last retention pass whose own pass a lock
	// postponed or SIGTERM cut short; the newest restores byte-exact.
	logs := d.logs()
	if i := strings.LastIndex(logs, "retention applied"); i >= 0 {
		logs = logs[i:]
	}
	late := strings.Count(logs, "retention postponed") + strings.Count(logs, "retention failed")
	if snaps := c.s3Snapshots(); len(snaps) == 0 || len(snaps) > 2+late {
		t.Errorf("%d snapshots after retention keep_last 2 (%d passes postponed since the last one applied)", len(snaps), late)
	}
	target := filepath.Join(t.TempDir(), "restore")
	c.mustRun("restore", "--target", target, "latest")
	if diff := workload.Diff(manifest(t, src), manifest(t, target), true); len(diff) > 0 {
		t.Fatalf("restore differs:\n%s", strings.Join(diff, "\n"))
	}
	c.mustRun("check", "--read-data")
}

// statusJSON is the part of /api/v1/status these tests read.
type statusJSON struct {
	Policy  string `json:"policy"`
	Running *struct {
		RunID string `json:"run_id"`
		Kind  string `json:"kind"`
	} `json:"running"`
	LastBackups []struct {
		RunID   string `json:"run_id"`
		Outcome string `json:"outcome"`
		Reason  string `json:"reason"`
	} `json:"last_backups"`
}

func (d *daemonProc) status() []statusJSON {
	d.t.Helper()
	var st struct {
		Policies []statusJSON `json:"policies"`
	}
	if err := json.Unmarshal([]byte(d.get("/api/v1/status")), &st); err != nil {
		d.t.Fatalf("status: %v", err)
	}
	return st.Policies
}

// The object store killed (SIGKILL) in the middle of a scheduled backup:
// the run fails within a bound with reason repository (retries are
// bounded, each attempt by the repository's timeout), the daemon stays up,
// the last-success timestamp stays where it was, so the RPO rule's
// expression turns false during the outage; once the store is back, the
// next scheduled backup succeeds, the repository checks clean, and the
// failed run is not counted again (as interrupted) by a restarted daemon.
func TestS3DaemonStoreDownMidBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	srv := s3test.StartMinIO(t)
	c := s3CLI(t, srv, "mesh")
	opt := workload.Options{Proxies: 20, ConsulServers: 1, Scale: 0.3, Seed: 12}
	src := genVolume(t, opt)
	c.mustRun("init")
	const rpo = 8 * time.Second
	cfg := writeS3DaemonConfig(t, srv, c, src, rpo.String())
	dc := &cli{t: t, env: daemonEnv(srv)}
	addr := freePort(t)
	d := startDaemon(t, dc, cfg, addr)
	fams := d.waitFor("a first backup", 60*time.Second, func(f map[string]*dto.MetricFamily) bool {
		b, _ := value(f, "backupd_backup_runs_total", mesh)
		return b >= 1
	})
	if v, _ := value(fams, "backupd_backup_failures_total", nil); v != 0 {
		t.Fatalf("a failure before the outage\n%s", tail(d.logs(), 3000))
	}
	// Catch a backup with data to upload in flight, and kill the store.
	if err := workload.Mutate(src, opt, 3); err != nil {
		t.Fatal(err)
	}
	var runID string
	deadline := time.Now().Add(60 * time.Second)
	for runID == "" {
		if time.Now().After(deadline) {
			t.Fatalf("never saw a backup in progress\n%s", tail(d.logs(), 3000))
		}
		if v, _ := value(d.scrape(), "backupd_backup_in_progress", mesh); v == 1 {
			for _, st := range d.status() {
				if st.Running != nil && st.Running.Kind == "backup" {
					runID = st.Running.RunID
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Kill()
	killed := time.Now()
	fams = d.scrape()
	lastOK, _ := value(fams, "backupd_last_backup_success_timestamp_seconds", mesh)
	fams = d.waitFor("the run in flight failed", 60*time.Second, func(f map[string]*dto.MetricFamily) bool {
		v, _ := value(f, "backupd_backup_failures_total", mesh)
		return v >= 1
	})
	took := time.Since(killed)
	t.Logf("the run in flight failed %v after the store was killed", took.Round(time.Millisecond))
	if v, _ := value(fams, "backupd_backup_failures_total", map[string]string{"policy": "mesh", "reason": "repository"}); v < 1 {
		t.Errorf("no failure with reason repository: %v", fams["backupd_backup_failures_total"])
	}
	logs := d.logs()
	if !strings.Contains(logs, `"run":"`+runID+`"`) || !failedForRepository(logs, runID) {
		t.Errorf("run %s in flight at the kill was not logged as failed with reason repository:\n%s", runID, tail(logs, 3000))
	}
	if v, _ := value(fams, "backupd_storage_retries_total", bucketRepo); v == 0 {
		t.Error("no retries counted while the store was down")
	}
	// The daemon is up and answers; the newest good snapshot has not
	// moved, and once the RPO has passed the recording rule
	// backupd:rpo_compliant:bool, (time() - last_success) <= bool rpo,
	// evaluates to 0.
	for time.Since(killed) < rpo+time.Second {
		time.Sleep(200 * time.Millisecond)
	}
	if d.get("/healthz") == "" {
		t.Error("/healthz empty")
	}
	// repository_up turns 0 once the repository's state is refreshed
	// after the failed run (its listing retried while the store is down).
	fams = d.waitFor("repository_up 0 while the store is down", 30*time.Second, func(f map[string]*dto.MetricFamily) bool {
		v, _ := value(f, "backupd_repository_up", bucketRepo)
		return v == 0
	})
	if v, _ := value(fams, "backupd_last_backup_success_timestamp_seconds", mesh); v != lastOK {
		t.Errorf("last success moved from %v to %v while the store was down", lastOK, v)
	}
	if compliant := float64(time.Now().Unix())-lastOK <= rpo.Seconds(); compliant {
		t.Errorf("rpo_compliant would be 1 %v after the last success", time.Since(time.Unix(int64(lastOK), 0)))
	}
	failedBefore, _ := value(fams, "backupd_backup_failures_total", mesh)

	srv.Restart(t)
	fams = d.waitFor("a good backup after the store came back", 90*time.Second, func(f map[string]*dto.MetricFamily) bool {
		v, _ := value(f, "backupd_last_backup_success_timestamp_seconds", mesh)
		return v > lastOK
	})
	if v, _ := value(fams, "backupd_repository_up", bucketRepo); v != 1 {
		t.Errorf("repository_up = %v after the store came back", v)
	}
	for _, reason := range []string{"interrupted", "other", "source", "corruption", "locked"} {
		if v, _ := value(fams, "backupd_backup_failures_total", map[string]string{"policy": "mesh", "reason": reason}); v != 0 {
			t.Errorf("%v failures with reason %s", v, reason)
		}
	}
	// The failed run is in the status, as a user looking at it wants.
	found := false
	for _, st := range d.status() {
		for _, b := range st.LastBackups {
			found = found || (b.RunID == runID && b.Outcome == "failure" && b.Reason == "repository")
		}
	}
	if !found {
		t.Errorf("the failed run %s is not in the status:\n%s", runID, d.get("/api/v1/status"))
	}
	d.stop()
	// A restarted daemon does not count the failed runs again as
	// interrupted ones.
	d = startDaemon(t, dc, cfg, addr)
	fams = d.waitFor("the restarted daemon's first backup", 60*time.Second, func(f map[string]*dto.MetricFamily) bool {
		v, _ := value(f, "backupd_backup_runs_total", mesh)
		return v >= 1
	})
	if v, _ := value(fams, "backupd_backup_failures_total", map[string]string{"policy": "mesh", "reason": "interrupted"}); v != 0 {
		t.Errorf("the restarted daemon counts %v interrupted runs (the %v failed during the outage are counted again)", v, failedBefore)
	}
	d.stop()
	c.mustRun("check", "--read-data")
}

// failedForRepository reports whether the logs hold a "run failed" line of run id
// with reason repository.
func failedForRepository(logs, id string) bool {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"msg":"run failed"`) && strings.Contains(l, `"run":"`+id+`"`) && strings.Contains(l, `"reason":"repository"`) {
			return true
		}
	}
	return false
}
