package s3_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/backendtest"
	"github.com/meshbackup/backupd/backupd/backend/s3"
	"github.com/meshbackup/backupd/backupd/backend/s3/s3test"
)

// newRepo creates a repository in a fresh bucket of srv.
func newRepo(t *testing.T, srv *s3test.Server, prefix string, edit func(*s3.Options)) *s3.Backend {
	t.Helper()
	opt := srv.Options(srv.NewBucket(t), prefix)
	if edit != nil {
		edit(&opt)
	}
	be, err := s3.Create(t.Context(), opt)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return be
}

func TestConformance(t *testing.T) {
	srv := s3test.StartMinIO(t)
	for _, prefix := range []string{"", "some/repo"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backend.Backend { return newRepo(t, srv, prefix, nil) })
		})
	}
}

// TestKilledStore kills MinIO under a backend: requests fail as transient
// errors, and after a restart on the same port and data the objects saved
// before are there and new saves work.
func TestKilledStore(t *testing.T) {
	srv := s3test.StartMinIO(t)
	ctx := t.Context()
	be := newRepo(t, srv, "repo", nil)
	h := backend.Handle{Type: backend.SnapshotFile, Name: "s1"}
	if err := be.Save(ctx, h, strings.NewReader("before")); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	err := be.Save(ctx, backend.Handle{Type: backend.SnapshotFile, Name: "s2"}, strings.NewReader("during"))
	if !backend.IsTransient(err) {
		t.Fatalf("save to a killed store: want a transient error, got %v", err)
	}
	if _, err := be.Stat(ctx, h); !backend.IsTransient(err) || errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat on a killed store: want a transient error, got %v", err)
	}
	srv.Restart(t)
	if got, err := backend.LoadAll(ctx, be, h); err != nil || string(got) != "before" {
		t.Fatalf("after restart: %q %v", got, err)
	}
	if err := be.Save(ctx, backend.Handle{Type: backend.SnapshotFile, Name: "s2"}, strings.NewReader("after")); err != nil {
		t.Fatalf("save after restart: %v", err)
	}
}
