package collectors

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/mem"
	"github.com/meshbackup/backupd/backupd/backend/retry"
)

// flaky fails the first failures Stat calls with a transient error.
type flaky struct {
	backend.Backend
	failures int
}

func (f *flaky) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if f.failures > 0 {
		f.failures--
		return backend.FileInfo{}, backend.Transient(errors.New("503 SlowDown"))
	}
	return f.Backend.Stat(ctx, h)
}

// Retries of the retry layer show in backupd_storage_retries_total, per
// repository and operation, as a scrape of the exporter's registry sees
// them.
func TestRetryHookCountsRetries(t *testing.T) {
	reg, _, storage, err := NewRegistry("test")
	if err != nil {
		t.Fatal(err)
	}
	m := mem.New()
	h := backend.Handle{Type: backend.SnapshotFile, Name: "s1"}
	if err := m.Save(t.Context(), h, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	noSleep := func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	be := retry.New(&flaky{Backend: m, failures: 2}, retry.Options{OnRetry: storage.RetryHook("s3"), Sleep: noSleep})
	if _, err := be.Stat(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	_ = retry.New(m, retry.Options{OnRetry: storage.RetryHook("local")})

	want := `
# HELP backupd_storage_retries_total Backend operations retried by the retry layer (object storage; the local backend does not retry).
# TYPE backupd_storage_retries_total counter
backupd_storage_retries_total{op="list",repository="local"} 0
backupd_storage_retries_total{op="list",repository="s3"} 0
backupd_storage_retries_total{op="load",repository="local"} 0
backupd_storage_retries_total{op="load",repository="s3"} 0
backupd_storage_retries_total{op="remove",repository="local"} 0
backupd_storage_retries_total{op="remove",repository="s3"} 0
backupd_storage_retries_total{op="save",repository="local"} 0
backupd_storage_retries_total{op="save",repository="s3"} 0
backupd_storage_retries_total{op="stat",repository="local"} 0
backupd_storage_retries_total{op="stat",repository="s3"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "backupd_storage_retries_total"); err != nil {
		t.Error(err)
	}
}

// Operations a daemon's backup child measured and reported (Observe,
// Retried) count as the daemon's own would: the same series, beside those
// of the wrapped backend.
func TestObserveCountsAChildsOperations(t *testing.T) {
	reg, _, storage, err := NewRegistry("test")
	if err != nil {
		t.Fatal(err)
	}
	be := storage.Wrap("local", mem.New())
	if _, err := be.Stat(t.Context(), backend.Handle{Type: backend.SnapshotFile, Name: "none"}); !errors.Is(err, backend.ErrNotFound) {
		t.Fatal(err)
	}
	storage.Observe("local", "save", "ok", 20*time.Millisecond)
	storage.Observe("local", "save", "ok", 3*time.Second)
	storage.Observe("local", "stat", "not_found", time.Millisecond)
	storage.Retried("local", "save")
	for _, tc := range []struct {
		metric string
		labels []string
		want   float64
	}{
		{"backupd_storage_operations_total", []string{"local", "save", "ok"}, 2},
		{"backupd_storage_operations_total", []string{"local", "stat", "not_found"}, 2},
		{"backupd_storage_retries_total", []string{"local", "save"}, 1},
	} {
		var got float64
		switch tc.metric {
		case "backupd_storage_operations_total":
			got = testutil.ToFloat64(storage.ops.WithLabelValues(tc.labels...))
		default:
			got = testutil.ToFloat64(storage.retries.WithLabelValues(tc.labels...))
		}
		if got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range fams {
		if f.GetName() != "backupd_storage_operation_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "op" && lp.GetValue() == "save" {
					found = true
					if h := m.GetHistogram(); h.GetSampleCount() != 2 || h.GetSampleSum() < 3.02 || h.GetSampleSum() > 3.021 {
						t.Errorf("save durations: %d samples, sum %v; want 2 summing to 3.02 s", h.GetSampleCount(), h.GetSampleSum())
					}
				}
			}
		}
	}
	if !found {
		t.Error("no duration series of save")
	}
}
