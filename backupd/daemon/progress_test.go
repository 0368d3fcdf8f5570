package daemon

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/results"
)

// progressObserver records the progress reports and the finished runs.
type progressObserver struct {
	nopObserver
	mu       sync.Mutex
	progress []results.Record
	finished []results.Record
	reported chan results.Record
}

func (o *progressObserver) RunProgress(r results.Record) {
	o.mu.Lock()
	o.progress = append(o.progress, r)
	o.mu.Unlock()
	o.reported <- r
}

func (o *progressObserver) RunFinished(r results.Record) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.finished = append(o.finished, r)
}

// holdPacks is a backend whose first pack upload waits until release is
// closed: a backup stopped there has read every file but not finished.
type holdPacks struct {
	backend.Backend
	once    sync.Once
	held    chan struct{}
	release chan struct{}
}

func (h *holdPacks) Save(ctx context.Context, hd backend.Handle, rd io.ReadSeeker) error {
	if hd.Type == backend.PackFile {
		h.once.Do(func() {
			close(h.held)
			<-h.release
		})
	}
	return h.Backend.Save(ctx, hd, rd)
}

// A backup reports its counts while it runs, on the progress ticker: the
// observer sees them rise before the run ends, the status shows the running
// run with its counts and start, and the final record's counts are never
// below the last report (the collectors add only the remainder).
func TestBackupReportsProgressWhileRunning(t *testing.T) {
	src := t.TempDir()
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(src, "f"+string(rune('a'+i))), []byte(strings.Repeat("raft page ", 2000+i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, dir := repotest.NewLocal(t)
	t.Setenv("BACKUPD_TEST_PASSWORD", string(repotest.Password))
	cfg, err := config.Parse("test.yaml", []byte(`repositories: [{name: local, path: `+dir+`, password_env: BACKUPD_TEST_PASSWORD}]
policies:
  - {name: mesh, source: `+src+`, repository: local, schedule: "@every 1h", rpo: 2h, rto: 1h, drill: {schedule: "@every 1h"}, verify: {schedule: "@every 1h"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	hold := &holdPacks{held: make(chan struct{}), release: make(chan struct{})}
	obs := &progressObserver{reported: make(chan results.Record, 16)}
	d, err := New(cfg, Options{Observer: obs, Hostname: "testhost", RepoOptions: repotest.Options(),
		OpenBackend: func(_ context.Context, rc config.Repository) (backend.Backend, error) {
			be, err := local.Open(rc.Path, local.Options{})
			hold.Backend = be
			return hold, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	ticks := make(chan time.Time)
	var interval time.Duration
	d.ticker = func(iv time.Duration) (<-chan time.Time, func()) { interval = iv; return ticks, func() {} }
	if err := d.open(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if st := d.Status(); st[0].Running != nil {
		t.Fatalf("a run shows as running before any started: %+v", st[0].Running)
	}
	done := make(chan results.Record, 1)
	go func() { done <- d.runBackup(t.Context(), cfg, d.handle("local"), cfg.Policies[0], "scheduled") }()

	tick := func() results.Record {
		t.Helper()
		select {
		case ticks <- time.Now():
		case <-time.After(guard):
			t.Fatal("the backup does not take progress ticks")
		}
		select {
		case r := <-obs.reported:
			return r
		case <-time.After(guard):
			t.Fatal("no progress report after a tick")
		}
		return results.Record{}
	}
	first := tick() // early: whatever has been counted so far
	select {
	case <-hold.held:
	case <-time.After(guard):
		t.Fatal("the backup never uploaded a pack")
	}
	// Every file is read; the pack upload holds the run.
	mid := tick()
	if mid.FilesNew != 20 || mid.BytesRead == 0 || mid.BytesRead < first.BytesRead || mid.FilesNew < first.FilesNew {
		t.Fatalf("progress while the pack upload is held: first %+v, then %+v", first, mid)
	}
	if mid.Kind != results.Backup || mid.Policy != "mesh" || mid.RunID == "" || mid.Start.IsZero() || !mid.End.IsZero() {
		t.Fatalf("progress record lacks the run: %+v", mid)
	}
	obs.mu.Lock()
	nFinished := len(obs.finished)
	obs.mu.Unlock()
	if nFinished != 0 {
		t.Fatal("the run finished before its pack was stored")
	}
	st := d.Status()
	run := st[0].Running
	if run == nil || run.RunID != mid.RunID || run.Kind != results.Backup || !run.Start.Equal(mid.Start) ||
		run.Files != 20 || run.FilesNew != 20 || run.BytesRead != mid.BytesRead || run.Updated.IsZero() {
		t.Fatalf("status of the running backup: %+v (progress %+v)", run, mid)
	}
	close(hold.release)
	var final results.Record
	select {
	case final = <-done:
	case <-time.After(guard):
		t.Fatal("the backup did not finish")
	}
	if final.Outcome != results.Success || final.FilesNew != 20 || final.BytesRead < mid.BytesRead || final.BytesWritten < mid.BytesWritten {
		t.Fatalf("final record %+v below its progress %+v", final, mid)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.finished) != 1 || len(obs.progress) != 2 {
		t.Fatalf("%d progress reports and %d finished runs, want 2 and 1 (none after the end)", len(obs.progress), len(obs.finished))
	}
	if interval != time.Second {
		t.Errorf("progress interval %s, want the default 1s", interval)
	}
	if st := d.Status(); st[0].Running != nil {
		t.Fatalf("the finished run still shows as running: %+v", st[0].Running)
	}
}
