package collectors

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/daemon"
)

var _ daemon.StorageObserver = (*Storage)(nil)

// Storage measures a repository's backend operations.
type Storage struct {
	ops      *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
}

// NewStorage returns the storage-operation metrics.
func NewStorage() *Storage {
	return &Storage{
		ops: counter("storage_operations_total", "Backend operations by type and result (ok, not_found, error).", "repository", "op", "result"),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "storage_operation_duration_seconds",
			Help:                        "Duration of backend operations.",
			Buckets:                     []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
			NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 100, NativeHistogramMinResetDuration: time.Hour},
			[]string{"repository", "op"}),
		retries: counter("storage_retries_total", "Backend operations retried by the retry layer (object storage; the local backend does not retry).", "repository", "op"),
	}
}

var storageOps = []string{"save", "load", "stat", "list", "remove"}

// Register adds the metrics to reg.
func (s *Storage) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.ops, s.duration, s.retries} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Wrap returns be with its operations measured under the repository's name.
func (s *Storage) Wrap(repository string, be backend.Backend) backend.Backend {
	for _, op := range storageOps {
		for _, r := range []string{"ok", "not_found", "error"} {
			s.ops.WithLabelValues(repository, op, r)
		}
		s.duration.WithLabelValues(repository, op)
		s.retries.WithLabelValues(repository, op)
	}
	return &measured{Backend: be, s: s, repo: repository}
}

// RetryHook returns a function that counts one retry of the repository's
// backend into storage_retries_total{repository,op}; it is meant for the
// OnRetry option of package backend/retry. Only the operation becomes a
// label: the attempt number and the error (which may name a URL) are
// dropped. Safe for concurrent use. Whether storage_operations_total counts
// attempts or whole retried operations depends on the order of the
// wrappers: put Wrap outside the retry layer to count what the engine asked
// for, inside it to count every request.
func (s *Storage) RetryHook(repository string) func(op string, attempt int, err error) {
	for _, op := range storageOps {
		s.retries.WithLabelValues(repository, op)
	}
	return func(op string, _ int, _ error) {
		s.retries.WithLabelValues(repository, op).Inc()
	}
}

// Observe counts one backend operation of a repository measured elsewhere:
// in a daemon's backup child process, which reports its operations to the
// daemon (daemon.StorageObserver). result is ok, not_found or error.
func (s *Storage) Observe(repository, op, result string, d time.Duration) {
	s.ops.WithLabelValues(repository, op, result).Inc()
	s.duration.WithLabelValues(repository, op).Observe(d.Seconds())
}

// Retried counts one retry of a repository's backend operation measured
// elsewhere (a backup child's, as Observe).
func (s *Storage) Retried(repository, op string) {
	s.retries.WithLabelValues(repository, op).Inc()
}

type measured struct {
	backend.Backend
	s    *Storage
	repo string
}

var (
	_ backend.Backend   = (*measured)(nil)
	_ backend.Unwrapper = (*measured)(nil)
)

// Unwrap returns the measured backend, so that backend.As finds its
// optional features (the local backend's TempDir keeps packs built next to
// the repository).
func (m *measured) Unwrap() backend.Backend { return m.Backend }

func (m *measured) done(op string, start time.Time, err error) {
	result := "ok"
	switch {
	case errors.Is(err, backend.ErrNotFound):
		result = "not_found"
	case err != nil:
		result = "error"
	}
	m.s.ops.WithLabelValues(m.repo, op, result).Inc()
	m.s.duration.WithLabelValues(m.repo, op).Observe(time.Since(start).Seconds())
}

func (m *measured) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	start := time.Now()
	err := m.Backend.Save(ctx, h, rd)
	m.done("save", start, err)
	return err
}

func (m *measured) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	start := time.Now()
	err := m.Backend.Load(ctx, h, length, offset, fn)
	m.done("load", start, err)
	return err
}

func (m *measured) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	start := time.Now()
	fi, err := m.Backend.Stat(ctx, h)
	m.done("stat", start, err)
	return fi, err
}

func (m *measured) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	start := time.Now()
	err := m.Backend.List(ctx, t, fn)
	m.done("list", start, err)
	return err
}

func (m *measured) Remove(ctx context.Context, h backend.Handle) error {
	start := time.Now()
	err := m.Backend.Remove(ctx, h)
	m.done("remove", start, err)
	return err
}
