package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend/s3"
)

// Mistakes in --repo and the object storage flags and variables are bad
// usage (exit 2) whose message names the flag or variable, before anything
// is touched.
func TestStorageFlagErrors(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"other scheme", nil, []string{"--repo", "gs://bucket"}, "--repo gs://bucket: unsupported scheme gs://: want a directory or s3://BUCKET[/PREFIX]"},
		{"other scheme from the environment", []string{"BACKUPD_REPOSITORY=https://example.com/repo"}, nil, "--repo https://example.com/repo: unsupported scheme https://"},
		{"bad path style", nil, []string{"--repo", "s3://bucket", "--s3-path-style", "maybe"}, `--s3-path-style "maybe": want auto, true or false`},
		{"bad path style variable", []string{"BACKUPD_S3_PATH_STYLE=yes"}, []string{"--repo", "s3://bucket"}, `BACKUPD_S3_PATH_STYLE "yes": want auto, true or false`},
		{"endpoint without scheme", []string{"AWS_ENDPOINT_URL=minio:9000"}, []string{"--repo", "s3://bucket"}, `AWS_ENDPOINT_URL: "minio:9000" has no scheme, want http:// or https://`},
		{"s3 endpoint without scheme", []string{"AWS_ENDPOINT_URL_S3=127.0.0.1:9000"}, []string{"--repo", "s3://bucket"}, `AWS_ENDPOINT_URL_S3: "127.0.0.1:9000" has no scheme`},
		{"missing ca file", nil, []string{"--repo", "s3://bucket", "--s3-ca-file", filepath.Join(dir, "ca.pem")}, "--s3-ca-file: stat " + filepath.Join(dir, "ca.pem")},
		{"missing ca file variable", []string{"BACKUPD_S3_CA_FILE=" + filepath.Join(dir, "ca.pem")}, []string{"--repo", "s3://bucket"}, "BACKUPD_S3_CA_FILE: stat "},
		{"negative timeout", nil, []string{"--repo", "s3://bucket", "--storage-timeout", "-1s"}, "--storage-timeout -1s: want a duration of zero or more"},
		{"not a duration", nil, []string{"--repo", "s3://bucket", "--storage-timeout", "soon"}, `invalid argument "soon" for "--storage-timeout"`},
		{"timeout variable not a duration", []string{"BACKUPD_STORAGE_TIMEOUT=soon"}, []string{"--repo", "s3://bucket"}, "BACKUPD_STORAGE_TIMEOUT soon: want a duration such as 30s or 2m"},
		{"negative uploads", nil, []string{"--repo", "s3://bucket", "--uploads", "-2"}, "--uploads -2: want a whole number of zero or more"},
		{"uploads variable not a number", []string{"BACKUPD_UPLOADS=many"}, nil, "BACKUPD_UPLOADS many: want a whole number"},
		{"part size too small", []string{"BACKUPD_S3_PART_SIZE=1048576"}, []string{"--repo", "s3://bucket"}, "BACKUPD_S3_PART_SIZE 1048576: want a number of bytes from 5242880 (5 MiB)"},
		{"stale upload age not a duration", []string{"BACKUPD_S3_STALE_UPLOAD_AGE=old"}, []string{"--repo", "s3://bucket"}, "BACKUPD_S3_STALE_UPLOAD_AGE old: want a duration such as 1s or 2h"},
		{"s3 flag on a directory", nil, []string{"--s3-insecure-skip-verify"}, "--s3-insecure-skip-verify applies to s3:// repositories only; --repo " + c.repo + " is a directory"},
		{"timeout on a directory", nil, []string{"--storage-timeout", "1m"}, "--storage-timeout applies to s3:// repositories only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, cmd := range [][]string{{"init"}, {"snapshots"}} {
				_, stderr, code := c.run(tc.env, append(cmd, tc.args...)...)
				if code != exitUsage || !strings.Contains(stderr, tc.want) {
					t.Errorf("%s: exit %d, stderr %q; want exit 2 saying %q", cmd[0], code, stderr, tc.want)
				}
			}
		})
	}
	if _, err := os.Stat(c.repo); err == nil {
		t.Error("a usage error created the repository")
	}
}

// A bad s3:// URL is bad usage naming --repo, with what s3.ParseURL says
// is wrong.
func TestBadS3URL(t *testing.T) {
	if _, _, err := s3.ParseURL("s3://bucket"); err != nil {
		t.Skipf("s3.ParseURL is not implemented in this tree: %v", err)
	}
	c := newCLI(t)
	for _, tc := range []struct{ url, want string }{
		{"s3://", `--repo: s3 url "s3://": missing bucket`},
		{"s3://Bad", `--repo: s3 url "s3://Bad": bucket name "Bad"`},
		{"s3://bucket?region=x", `--repo: s3 url s3://bucket/...: a query or fragment is not allowed`},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, stderr, code := c.run(nil, "snapshots", "--repo", tc.url)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 saying %q", code, stderr, tc.want)
			}
		})
	}
}

// The daemon takes the storage settings from its config: the flags are
// refused by run, naming the flag.
func TestRunRefusesStorageFlags(t *testing.T) {
	c := newCLI(t)
	_, stderr, code := c.run(nil, "run", "--config", "x.yaml", "--uploads", "4")
	if code != exitUsage || !strings.Contains(stderr, "--uploads applies to --repo; the daemon takes it per repository from its config") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// Variables for object storage do not stand in the way of a directory
// repository (they may be set for another one); --uploads applies to both.
func TestStorageVariablesIgnoredForDirectory(t *testing.T) {
	c := newCLI(t)
	env := []string{"BACKUPD_S3_CA_FILE=/nonexistent/ca.pem", "BACKUPD_S3_PATH_STYLE=true", "BACKUPD_STORAGE_TIMEOUT=30s", "AWS_ENDPOINT_URL=http://127.0.0.1:1"}
	if _, stderr, code := c.run(env, "init", "--uploads", "2"); code != 0 {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	if _, stderr, code := c.run(env, "snapshots"); code != 0 {
		t.Fatalf("snapshots: exit %d: %s", code, stderr)
	}
}

// --help says what the object storage flags do, and that skipping TLS
// verification is for tests only.
func TestStorageFlagsHelp(t *testing.T) {
	c := newCLI(t)
	out, _, code := c.run(nil, "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"repository: a directory or s3://BUCKET[/PREFIX] (env BACKUPD_REPOSITORY)",
		"--s3-path-style string", "(env BACKUPD_S3_PATH_STYLE)", `(default "auto")`,
		"--s3-ca-file string", "(env BACKUPD_S3_CA_FILE)",
		"--s3-insecure-skip-verify", "For tests only",
		"--storage-timeout duration", "env BACKUPD_STORAGE_TIMEOUT)",
		"--uploads int", "env BACKUPD_UPLOADS)",
		"AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}
