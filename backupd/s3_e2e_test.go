package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

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

// The local cache of an s3:// repository: by default under
// $XDG_CACHE_HOME/backupd/repos/<repository id>, mode 0700, filled by a
// backup and used by the next one; --cache-dir and BACKUPD_CACHE_DIR move
// it; --no-cache keeps none. A directory repository has none.
func TestS3Cache(t *testing.T) {
	srv := s3test.StartMinIO(t)
	id, secret := srv.Credentials()
	src := genVolume(t, workload.Options{Proxies: 1, ConsulServers: 1, Scale: 0.01, Seed: 3})
	newS3CLI := func(t *testing.T) *cli {
		c := newCLI(t)
		c.repo = "s3://" + srv.NewBucket(t)
		c.env = append(c.env, "BACKUPD_REPOSITORY="+c.repo, "AWS_ENDPOINT_URL="+srv.Endpoint(), "AWS_REGION="+s3test.Region,
			"AWS_ACCESS_KEY_ID="+id, "AWS_SECRET_ACCESS_KEY="+secret, "AWS_PROFILE=", "AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent")
		return c
	}
	// xdgCache is the XDG_CACHE_HOME newCLI gave c.
	xdgCache := func(c *cli) string {
		for _, e := range c.env {
			if v, ok := strings.CutPrefix(e, "XDG_CACHE_HOME="); ok {
				return v
			}
		}
		t.Fatal("no XDG_CACHE_HOME")
		return ""
	}
	custom := filepath.Join(t.TempDir(), "custom")
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		// root returns where the cache should be ("" for nowhere).
		root func(c *cli) string
	}{
		{"default", nil, nil, func(c *cli) string { return filepath.Join(xdgCache(c), "backupd", "repos") }},
		{"--cache-dir", nil, []string{"--cache-dir", custom + "-flag"}, func(*cli) string { return custom + "-flag" }},
		{"BACKUPD_CACHE_DIR", []string{"BACKUPD_CACHE_DIR=" + custom + "-env"}, nil, func(*cli) string { return custom + "-env" }},
		{"--no-cache", nil, []string{"--no-cache"}, func(*cli) string { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newS3CLI(t)
			c.env = append(c.env, tc.env...)
			mustRun := func(args ...string) string {
				t.Helper()
				out, stderr, code := c.run(nil, append(args, tc.args...)...)
				if code != 0 {
					t.Fatalf("backupd %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
				}
				return out
			}
			mustRun("init")
			mustRun("backup", "--policy", "mesh", src)
			mustRun("backup", "--policy", "mesh", src)
			var snaps []snapshotJSON
			if err := json.Unmarshal([]byte(mustRun("snapshots", "--json")), &snaps); err != nil || len(snaps) != 2 {
				t.Fatalf("snapshots: %v %v", snaps, err)
			}
			root := tc.root(c)
			if root == "" {
				if dir := filepath.Join(xdgCache(c), "backupd"); !isMissing(dir) {
					t.Errorf("--no-cache: %s exists", dir)
				}
				return
			}
			entries, err := os.ReadDir(root)
			if err != nil || len(entries) != 1 || len(entries[0].Name()) != 64 {
				t.Fatalf("cache root %s: %v, %v; want one directory named by the repository id", root, entries, err)
			}
			dir := filepath.Join(root, entries[0].Name())
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("cache %s: %v, %v; want mode 0700", dir, fi.Mode(), err)
			}
			for typ, want := range map[string]int{"snapshots": 2, "index": 1, "data": 1} {
				files, _ := filepath.Glob(filepath.Join(dir, typ, "[0-9a-f]*"))
				if len(files) < want {
					t.Errorf("cache %s/%s: %d files, want at least %d", dir, typ, len(files), want)
				}
			}
		})
	}
	// Check reads the store's copies, never the cache's: a snapshot
	// damaged in the bucket is found although the cache holds it intact
	// (and a listing, served from the cache, still reads it).
	t.Run("check bypasses the cache", func(t *testing.T) {
		c := newS3CLI(t)
		for _, args := range [][]string{{"init"}, {"backup", "--policy", "mesh", src}} {
			if _, stderr, code := c.run(nil, args...); code != 0 {
				t.Fatalf("%v: exit %d\n%s", args, code, stderr)
			}
		}
		bucket := strings.TrimPrefix(c.repo, "s3://")
		list, err := srv.Client().ListObjectsV2(t.Context(), &awss3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String("snapshots/")})
		if err != nil || len(list.Contents) != 1 {
			t.Fatalf("list snapshots: %v, %v", list, err)
		}
		if _, err := srv.Client().PutObject(t.Context(), &awss3.PutObjectInput{Bucket: &bucket, Key: list.Contents[0].Key,
			Body: strings.NewReader("damaged at rest")}); err != nil {
			t.Fatal(err)
		}
		if _, stderr, code := c.run(nil, "snapshots"); code != 0 {
			t.Errorf("snapshots from the cache: exit %d\n%s", code, stderr)
		}
		if _, stderr, code := c.run(nil, "check"); code != exitCorrupt {
			t.Errorf("check of a snapshot damaged in the bucket: exit %d, want %d\n%s", code, exitCorrupt, stderr)
		}
	})

	// A directory repository is its own cache.
	c := newCLI(t)
	if _, stderr, code := c.run(nil, "init"); code != 0 {
		t.Fatal(stderr)
	}
	if _, stderr, code := c.run(nil, "backup", "--policy", "mesh", src); code != 0 {
		t.Fatal(stderr)
	}
	if dir := filepath.Join(xdgCache(c), "backupd"); !isMissing(dir) {
		t.Errorf("a directory repository got a cache in %s", dir)
	}
}

func isMissing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}
