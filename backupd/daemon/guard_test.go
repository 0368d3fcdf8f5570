package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/results"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// guardDaemon is a daemon with one policy backing up source (a symlink the
// test points at the "volume") into a local repository, keep_last 1.
func guardDaemon(t *testing.T, source string) (*Daemon, *config.Config) {
	t.Helper()
	return testDaemon{source: source, keepLast: 1, hostname: "node-1"}.open(t)
}

func (d *Daemon) backupNow(t *testing.T, cfg *config.Config) results.Record {
	t.Helper()
	return d.runBackup(t.Context(), cfg, d.handle("local"), cfg.Policies[0], "test")
}

func (d *Daemon) snapshotsNow(t *testing.T) []*snapshot.Snapshot {
	t.Helper()
	repo, err := d.handle("local").repo.Fresh()
	if err != nil {
		t.Fatal(err)
	}
	snaps, bad, err := snapshot.LoadAll(t.Context(), repo)
	if err != nil || len(bad) > 0 {
		t.Fatal(err, bad)
	}
	return snaps
}

func writeVolume(t *testing.T, dir string, files int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range files {
		data := strings.Repeat("raft page ", 1000+i)
		if err := os.WriteFile(filepath.Join(dir, "f"+string(rune('a'+i%26))+strings.Repeat("x", i/26)), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// repoint makes the symlink link point at dir.
func repoint(t *testing.T, link, dir string) {
	t.Helper()
	tmp := link + ".new"
	if err := os.Symlink(dir, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// Scenario 34: an unmounted volume whose mount point holds one placeholder
// file. Its backup is refused (most files and bytes gone), again and again,
// so retention never runs on it; the real snapshot stays.
func TestDaemonRefusesShrunkSource(t *testing.T) {
	root := t.TempDir()
	volume, mountPoint, link := filepath.Join(root, "pv"), filepath.Join(root, "mnt"), filepath.Join(root, "source")
	writeVolume(t, volume, 40)
	writeVolume(t, mountPoint, 1)
	if err := os.Symlink(volume, link); err != nil {
		t.Fatal(err)
	}
	d, cfg := guardDaemon(t, link)
	if rec := d.backupNow(t, cfg); rec.Outcome != results.Success {
		t.Fatalf("first backup: %+v", rec)
	}
	real := d.snapshotsNow(t)
	repoint(t, link, mountPoint)
	for range 3 {
		rec := d.backupNow(t, cfg)
		if rec.Outcome != results.Failure || rec.Reason != results.ReasonSource || !strings.Contains(rec.Error, "shrank drastically") {
			t.Fatalf("backup of the placeholder: %+v, want a source failure naming the shrink", rec)
		}
	}
	if got := d.snapshotsNow(t); len(got) != 1 || got[0].ID != real[0].ID {
		t.Fatalf("snapshots after the refused backups: %d, want only the real one", len(got))
	}
}

// Scenario 34, the device side: the source moves to another device (a
// volume not mounted and its mount point's stale copy, or mounted elsewhere).
// The backup is made but marked suspect, and retention (keep_last 1) keeps
// the last healthy snapshot beside it.
func TestDaemonRetentionKeepsLastHealthySnapshot(t *testing.T) {
	shm := "/dev/shm"
	var a, b syscall.Stat_t
	root := t.TempDir()
	if syscall.Stat(shm, &a) != nil || syscall.Stat(root, &b) != nil || a.Dev == b.Dev {
		t.Skip("needs /dev/shm on another device than the temp dir")
	}
	other, err := os.MkdirTemp(shm, "backupd-test-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(other) })
	volume, link := filepath.Join(root, "pv"), filepath.Join(root, "source")
	writeVolume(t, volume, 10)
	writeVolume(t, other, 10)
	if err := os.Symlink(volume, link); err != nil {
		t.Fatal(err)
	}
	d, cfg := guardDaemon(t, link)
	for range 2 {
		if rec := d.backupNow(t, cfg); rec.Outcome != results.Success {
			t.Fatalf("backup: %+v", rec)
		}
		time.Sleep(10 * time.Millisecond)
	}
	healthy := d.snapshotsNow(t)
	if len(healthy) != 1 || healthy[0].Suspect != "" {
		t.Fatalf("keep_last 1 left %d snapshots", len(healthy))
	}
	repoint(t, link, other)
	if rec := d.backupNow(t, cfg); rec.Outcome != results.Success {
		t.Fatalf("backup on the other device: %+v", rec)
	}
	got := d.snapshotsNow(t)
	if len(got) != 2 || got[0].ID != healthy[0].ID || got[1].Suspect == "" || !strings.Contains(got[1].Suspect, "device") {
		t.Fatalf("after a backup on another device: %d snapshots %+v; want the last healthy one kept and a suspect one", len(got), got)
	}
	// The suspect snapshot does not make the policy look fresh: the RPO
	// counts from the healthy one.
	if last := d.lastSuccess("mesh"); !last.Equal(healthy[0].Time) {
		t.Fatalf("last good backup %v after a suspect one, want the healthy snapshot's %v", last, healthy[0].Time)
	}
}

// Scenario 35 in the daemon: a backup that could not read a file is
// recorded as partial, counting the file, and retention does not run after
// it. Root reads through any permission: scripts/test-unprivileged.sh runs
// this as nobody.
func TestDaemonRecordsPartialBackup(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads unreadable files; make test runs this package as nobody too")
	}
	src := filepath.Join(t.TempDir(), "vol")
	writeVolume(t, src, 5)
	d, cfg := guardDaemon(t, src)
	if rec := d.backupNow(t, cfg); rec.Outcome != results.Success {
		t.Fatalf("first backup: %+v", rec)
	}
	locked := filepath.Join(src, "locked.db")
	if err := os.WriteFile(locked, []byte("not for us"), 0o000); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(locked, 0o644) })
	rec := d.backupNow(t, cfg)
	if rec.Outcome != results.Partial || rec.FilesUnreadable != 1 || rec.Snapshot == "" {
		t.Fatalf("backup with an unreadable file: %+v, want partial with 1 unreadable file and a snapshot", rec)
	}
	if n := len(d.snapshotsNow(t)); n != 2 {
		t.Fatalf("%d snapshots after the partial backup; retention (keep_last 1) must not run after it, want 2", n)
	}
	_ = os.Chmod(locked, 0o644)
	if rec := d.backupNow(t, cfg); rec.Outcome != results.Success {
		t.Fatalf("complete backup: %+v", rec)
	}
	if n := len(d.snapshotsNow(t)); n != 1 {
		t.Fatalf("%d snapshots after a complete backup with keep_last 1, want 1", n)
	}
}
