package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/restorer"
	"github.com/meshbackup/backupd/backupd/results"
)

// guard bounds a wait that only a hang would exceed: a failure guard, not
// a timing assertion.
const guard = 30 * time.Second

// newTestDaemon opens a daemon on a fresh local repository with one policy
// "mesh" backing up src; the schedules are never started.
func newTestDaemon(t *testing.T, src string) (*Daemon, *config.Config, *repoHandle) {
	t.Helper()
	d, cfg := testDaemon{source: src, keepLast: 5}.open(t)
	return d, cfg, d.handle("local")
}

// deepRel is 40 nested directories of 120-character names: over PATH_MAX.
func deepRel() string {
	var parts []string
	for i := range 40 {
		parts = append(parts, strings.Repeat(string(rune('a'+i%26)), 120))
	}
	return filepath.Join(parts...)
}

// writeDeep writes content to the file rel below root, creating its
// directories one at a time through a handle (no system call sees the
// whole path).
func writeDeep(t *testing.T, root, rel string, content []byte) {
	t.Helper()
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteFile(rel, content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// plantFIFO replaces the file at p by a FIFO and returns what releases a
// reader stuck opening it (a writer), for a failing test to clean up.
func plantFIFO(t *testing.T, p string) (unblock func()) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}
}

// within runs f and fails the test if it has not returned within the
// guard, calling unblock first.
func within(t *testing.T, what string, unblock func(), f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(guard):
		unblock()
		<-done
		t.Fatalf("%s hangs on a FIFO", what)
	}
}

// Scenario: a FIFO in the source where the newest snapshot has a file.
// The scrub never waits on it (it is not a scrub candidate: its type
// differs), finishes, and scrubs the other files, one beyond PATH_MAX too.
func TestScrubNeverWaitsOnAFIFO(t *testing.T) {
	src := t.TempDir()
	fifo := filepath.Join(src, "raft.db")
	for name, content := range map[string]string{"raft.db": "pages", "serf.keyring": "keys"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeDeep(t, src, filepath.Join(deepRel(), "leaf"), []byte("deep"))
	d, cfg, h := newTestDaemon(t, src)
	p := cfg.Policies[0]
	if rec := d.runBackup(t.Context(), cfg, h, p, "test"); rec.Outcome != results.Success || rec.FilesNew != 3 {
		t.Fatalf("backup: %+v", rec)
	}
	unblock := plantFIFO(t, fifo)
	var rec results.Record
	within(t, "the scrub", unblock, func() { rec = d.runScrub(t.Context(), cfg, h, p) })
	if rec.Outcome != results.Success || rec.FilesVerified != 2 || rec.SilentChanges != 0 {
		t.Fatalf("scrub: %+v; want success, the 2 regular files scrubbed", rec)
	}
}

// Scenario: a restored file replaced by a FIFO before the drill proves
// it. proveTree counts it as mismatched and never waits on it; a file
// beyond PATH_MAX is proved.
func TestDrillProofNeverWaitsOnAFIFO(t *testing.T) {
	src := t.TempDir()
	for name, content := range map[string]string{"raft.db": "pages", "serf.keyring": "keys"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeDeep(t, src, filepath.Join(deepRel(), "leaf"), []byte("deep"))
	d, cfg, h := newTestDaemon(t, src)
	p := cfg.Policies[0]
	if rec := d.runBackup(t.Context(), cfg, h, p, "test"); rec.Outcome != results.Success {
		t.Fatalf("backup: %+v", rec)
	}
	repo, sn, err := latest(t.Context(), h, p, "", true)
	if err != nil || sn == nil {
		t.Fatalf("latest: %v %v", sn, err)
	}
	scratch := filepath.Join(t.TempDir(), "drill")
	owner := false
	res, err := restorer.New(repo, restorer.Options{Owner: &owner}).Restore(t.Context(), sn, scratch)
	if err != nil || res.Err() != nil {
		t.Fatalf("restore: %v %v", err, res.Err())
	}
	unblock := plantFIFO(t, filepath.Join(scratch, "raft.db"))
	var mismatched, verified uint64
	within(t, "the drill's proof", unblock, func() {
		mismatched, verified, err = proveTree(context.WithoutCancel(t.Context()), repo, sn.Tree, scratch)
	})
	if err != nil || mismatched != 1 || verified != 2 {
		t.Fatalf("proveTree: %d mismatched, %d verified, err %v; want the FIFO mismatched, 2 proved", mismatched, verified, err)
	}
}
