package s3_test

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/backendtest"
	"github.com/meshbackup/backupd/backupd/backend/retry"
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

// TestRestartedStoreRiddenOut: through the retry layer with its default
// RetryFor, a save and a load issued while MinIO is down (killed, restarted
// 5 s later on the same port and data) wait for it and succeed, each retry
// counted; the saved object is there afterwards.
func TestRestartedStoreRiddenOut(t *testing.T) {
	srv := s3test.StartMinIO(t)
	ctx := t.Context()
	var retries atomic.Int64
	be := retry.Wrap(newRepo(t, srv, "repo", nil), retry.Options{OnRetry: func(string, int, error) { retries.Add(1) }})
	h := backend.Handle{Type: backend.SnapshotFile, Name: "s1"}
	if err := be.Save(ctx, h, strings.NewReader("before")); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(5 * time.Second)
		srv.Restart(t)
	}()
	h2 := backend.Handle{Type: backend.SnapshotFile, Name: "s2"}
	if err := be.Save(ctx, h2, strings.NewReader("during")); err != nil {
		t.Fatalf("save across a 5 s outage: %v", err)
	}
	<-restarted
	if retries.Load() == 0 {
		t.Fatal("the save during the outage was not retried")
	}
	for name, want := range map[backend.Handle]string{h: "before", h2: "during"} {
		if got, err := backend.LoadAll(ctx, be, name); err != nil || string(got) != want {
			t.Fatalf("%v after the outage: %q %v", name, got, err)
		}
	}
}

// TestTLS runs against MinIO over HTTPS, where the SDK sends each body
// unsigned with its SHA256 checksum as a trailer: the store must still
// refuse a tampered body. The certificate is trusted through CAFile only.
func TestTLS(t *testing.T) {
	srv := s3test.StartMinIOTLS(t)
	ctx := t.Context()
	t.Run("Conformance", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) backend.Backend { return newRepo(t, srv, "tls", nil) })
	})
	t.Run("Multipart", func(t *testing.T) {
		be := newRepo(t, srv, "tls", func(o *s3.Options) { o.PartSize = s3.MinPartSize })
		data := randomBytes(21, 11<<20)
		h := backend.Handle{Type: backend.PackFile, Name: "ab01"}
		if err := be.Save(ctx, h, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if got, err := backend.LoadAll(ctx, be, h); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("load: %v", err)
		}
	})
	t.Run("TamperedUploadIsRefused", func(t *testing.T) {
		for _, size := range []int{100_000, 6 << 20} {
			ft := s3test.NewFaultTransport(22, s3test.Rule{Kind: s3test.FlipRequest, Method: http.MethodPut, Probability: 1, Limit: 1, AfterBytes: 1234})
			be := newRepo(t, srv, "tamper", func(o *s3.Options) { o.Transport = ft.Wrap; o.PartSize = s3.MinPartSize })
			h := backend.Handle{Type: backend.PackFile, Name: "ab01"}
			err := be.Save(ctx, h, bytes.NewReader(randomBytes(23, size)))
			if ft.Count(s3test.FlipRequest) != 1 || err == nil {
				t.Fatalf("size %d: %d faults injected, save: %v; want one fault and a refused save", size, ft.Count(s3test.FlipRequest), err)
			}
			t.Logf("size %d: tampered body refused: %v", size, err)
			if _, err := be.Stat(ctx, h); !errors.Is(err, backend.ErrNotFound) {
				t.Fatalf("object stored after a refused upload: %v", err)
			}
		}
	})
	t.Run("Trust", func(t *testing.T) {
		bucket := srv.NewBucket(t)
		opt := srv.Options(bucket, "")
		opt.CAFile = ""
		_, err := s3.Open(ctx, opt)
		if err == nil || !strings.Contains(err.Error(), "not trusted (set ca_file") || backend.IsTransient(err) {
			t.Fatalf("open without the CA: want a non-transient error naming ca_file, got %v", err)
		}
		opt.InsecureSkipVerify = true
		if _, err := s3.Open(ctx, opt); err != nil {
			t.Fatalf("open with InsecureSkipVerify: %v", err)
		}
	})
}
