package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend/s3/s3test"
	"github.com/meshbackup/backupd/bench/workload"
)

// The command line on an s3:// repository in a real MinIO, reached as the
// AWS conventions say (AWS_ENDPOINT_URL, AWS_REGION, the key variables):
// init, backup, snapshots, restore byte-exact, check with data; a second
// init is refused; a wrong secret fails without being shown.
func TestS3RepositoryEndToEnd(t *testing.T) {
	srv := s3test.StartMinIO(t)
	bucket := srv.NewBucket(t)
	id, secret := srv.Credentials()
	c := newCLI(t)
	c.repo = "s3://" + bucket + "/mesh/prod"
	c.env = append(c.env, "BACKUPD_REPOSITORY="+c.repo, "AWS_ENDPOINT_URL="+srv.Endpoint(), "AWS_REGION="+s3test.Region,
		"AWS_ACCESS_KEY_ID="+id, "AWS_SECRET_ACCESS_KEY="+secret, "AWS_PROFILE=", "AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent")
	src := genVolume(t, workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.02, Seed: 7})
	want := manifest(t, src)

	mustRun := func(args ...string) string {
		t.Helper()
		out, stderr, code := c.run(nil, args...)
		if code != 0 {
			t.Fatalf("backupd %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
		}
		return out
	}
	if out := mustRun("init"); !strings.Contains(out, "at "+c.repo) {
		t.Errorf("init printed %q, want the URL", out)
	}
	if _, stderr, code := c.run(nil, "init"); code != exitFailed || !strings.Contains(stderr, "already exists") {
		t.Errorf("second init: exit %d, %q; want exit 1, already exists", code, stderr)
	}
	var s summary
	if err := json.Unmarshal([]byte(mustRun("backup", "--policy", "mesh", "--json", "--uploads", "2", "--s3-path-style", "true", src)), &s); err != nil {
		t.Fatal(err)
	}
	var snaps []snapshotJSON
	if err := json.Unmarshal([]byte(mustRun("snapshots", "--json")), &snaps); err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %v %v", snaps, err)
	}
	target := filepath.Join(t.TempDir(), "restore")
	mustRun("restore", "--target", target, "--storage-timeout", "1m", "latest")
	if d := workload.Diff(want, manifest(t, target), true); len(d) > 0 {
		t.Fatalf("restore differs:\n%s", strings.Join(d, "\n"))
	}
	mustRun("check", "--read-data")

	const wrong = "wrong-secret-0123456789abcdef"
	_, stderr, code := c.run([]string{"AWS_SECRET_ACCESS_KEY=" + wrong}, "snapshots")
	if code == 0 || strings.Contains(stderr, wrong) || strings.Contains(stderr, secret) {
		t.Errorf("wrong secret: exit %d, stderr %q; want a failure that shows no secret", code, stderr)
	}
}
