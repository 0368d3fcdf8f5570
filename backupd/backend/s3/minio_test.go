package s3_test

import (
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
