package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/collectors"
	"github.com/meshbackup/backupd/exporter"
)

// syncBuffer is a log sink safe for the daemon's goroutines.
type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

// A daemon whose S3 repository has static credentials (from a variable and
// a file) shows none of them in /api/v1/status, the landing page,
// /metrics, its logs or `config check`. The bucket is stood in for by a
// directory (the credentials are read as for a bucket, through
// location.FromConfig), so that the test runs without an object store.
func TestCredentialsNotShown(t *testing.T) {
	const (
		keyID  = "AKIATESTKEYID0000001"
		secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
		token  = "session-token-FwoGZXIvYXdzEXAMPLE"
	)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BACKUPD_TEST_KEY_ID", keyID)
	t.Setenv("BACKUPD_TEST_TOKEN", token)
	t.Setenv("BACKUPD_TEST_PASSWORD", string(repotest.Password))
	_, repoDir := repotest.NewLocal(t)
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "backupd.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, `repositories:
  - name: bucket
    path: s3://backupd/mesh
    password_env: BACKUPD_TEST_PASSWORD
    s3:
      endpoint: http://127.0.0.1:9000
      access_key_id_env: BACKUPD_TEST_KEY_ID
      secret_access_key_file: %s
      session_token_env: BACKUPD_TEST_TOKEN
policies:
  - name: mesh
    source: %s
    repository: bucket
    schedule: "@every 1h"
    rpo: 2h
    rto: 1h
    drill: {schedule: "@every 1h", scratch_dir: %s}
    verify: {schedule: "@every 1h"}
`, secretFile, src, t.TempDir()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	logs := newSyncBuffer()
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg, runs, storage, err := collectors.NewRegistry(version)
	if err != nil {
		t.Fatal(err)
	}
	var read location.Spec
	d, err := daemon.New(cfg, daemon.Options{Logger: log, Observer: runs, RepoOptions: repotest.Options(),
		OpenBackend: func(ctx context.Context, rc config.Repository) (backend.Backend, error) {
			spec, err := location.FromConfig(rc)
			if err != nil {
				return nil, err
			}
			read = spec
			// What a careless log line would print.
			log.Debug("opening", "spec", spec, "s3", fmt.Sprintf("%v %+v %#v", spec, spec.S3, spec.S3.Credentials))
			be, err := local.Open(repoDir, local.Options{})
			if err != nil {
				return nil, err
			}
			return storage.Wrap(rc.Name, be), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := exporter.New(reg, d, exporter.Options{Version: version, Logger: log})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, nil) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := d.Status()
		if d.Ready() && len(st) == 1 && len(st[0].LastBackups) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backup recorded within 30s; logs:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if read.S3.Credentials != (location.Credentials{AccessKeyID: keyID, SecretAccessKey: secret, SessionToken: token}) {
		t.Fatal("the credentials were not read: the test would prove nothing")
	}
	var shown strings.Builder
	for _, path := range []string{"/api/v1/status", "/", "/metrics"} {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		body, _ := io.ReadAll(rec.Result().Body)
		if rec.Code != 200 {
			t.Fatalf("GET %s: %d", path, rec.Code)
		}
		fmt.Fprintf(&shown, "GET %s:\n%s\n", path, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c := newCLI(t)
	stdout, stderr, _ := c.run(nil, "config", "check", cfgFile)
	fmt.Fprintf(&shown, "config check:\n%s%s\nlogs:\n%s", stdout, stderr, logs)
	if !strings.Contains(shown.String(), `"policy": "mesh"`) || !strings.Contains(shown.String(), "ok: 1 repositories") {
		t.Fatalf("the outputs lack what they should show:\n%s", shown.String())
	}
	for _, s := range []string{keyID, secret, token} {
		if strings.Contains(shown.String(), s) {
			t.Errorf("a credential (%.6s...) is shown:\n%s", s, shown.String())
		}
	}
}
