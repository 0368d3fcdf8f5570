package repository_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

func putLock(t *testing.T, be backend.Backend, name string, li repository.LockInfo) {
	t.Helper()
	b, _ := json.Marshal(li)
	if err := be.Save(t.Context(), backend.Handle{Type: backend.LockFile, Name: name}, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}

// Issue 15: a lock from another host dated far in the future blocked
// forever. A lock dated beyond the clock skew bound is stale; one within it
// is honoured, and the error names the lock and its holder.
func TestFutureDatedLocks(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		ahead  time.Duration
		blocks bool
	}{
		{"within the skew", 4 * time.Minute, true},
		{"beyond the skew", 6 * time.Minute, false},
		{"a year ahead", 365 * 24 * time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, be := repotest.NewMem(t)
			r := repotest.Reopen(t, be, repository.Options{Now: func() time.Time { return now }, LockRefresh: time.Hour})
			putLock(t, be, "future", repository.LockInfo{Exclusive: true, Hostname: "otherhost", PID: 4242, Command: "prune",
				Time: now.Add(tc.ahead), Acquired: now.Add(tc.ahead), Owner: "x"})
			l, err := r.Lock(t.Context(), repository.LockOptions{Command: "backup"})
			if !tc.blocks {
				if err != nil {
					t.Fatalf("future-dated lock beyond the skew still blocks: %v", err)
				}
				_ = l.Unlock()
				return
			}
			var le *repository.LockError
			if !errors.Is(err, repository.ErrLocked) || !errors.As(err, &le) || le.Name != "future" {
				t.Fatalf("want a LockError naming the lock, got %v", err)
			}
			for _, s := range []string{"locks/future", "otherhost", "pid 4242", `"prune"`, "backupd unlock"} {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func TestRemoveLocks(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	_, be := repotest.NewMem(t)
	r := repotest.Reopen(t, be, repository.Options{Now: func() time.Time { return now }, LockRefresh: time.Hour})
	putLock(t, be, "live", repository.LockInfo{Hostname: "otherhost", PID: 1, Command: "backup", Time: now, Owner: "a"})
	putLock(t, be, "old", repository.LockInfo{Hostname: "otherhost", PID: 2, Command: "backup", Time: now.Add(-time.Hour), Owner: "b"})
	putLock(t, be, "future", repository.LockInfo{Hostname: "otherhost", PID: 3, Command: "prune", Exclusive: true, Time: now.Add(48 * time.Hour), Owner: "c"})
	removed, err := r.RemoveLocks(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range removed {
		names = append(names, l.Name)
	}
	if strings.Join(names, ",") != "future,old" && strings.Join(names, ",") != "old,future" {
		t.Fatalf("unlock removed %v, want the stale old and future ones", names)
	}
	if n := countLocks(t, be); n != 1 {
		t.Fatalf("%d locks left, want the live one", n)
	}
	removed, err = r.RemoveLocks(t.Context(), true)
	if err != nil || len(removed) != 1 || removed[0].Name != "live" || countLocks(t, be) != 0 {
		t.Fatalf("unlock --force: %v %+v", err, removed)
	}
}

// A backup killed mid-refresh leaves two objects of one lock (the new one
// written, the old one not yet removed): the next lock recovers one backup,
// not two.
func TestRecoveredBackupsCountsLocksNotObjects(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	_, be := repotest.NewMem(t)
	r := repotest.Reopen(t, be, repository.Options{Now: func() time.Time { return now }, LockRefresh: time.Hour})
	old := now.Add(-time.Hour)
	putLock(t, be, "refreshed", repository.LockInfo{Hostname: "otherhost", PID: 1, Command: "backup", Time: old, Owner: "a"})
	putLock(t, be, "before-refresh", repository.LockInfo{Hostname: "otherhost", PID: 1, Command: "backup", Time: old.Add(-time.Minute), Owner: "a"})
	putLock(t, be, "another", repository.LockInfo{Hostname: "otherhost", PID: 2, Command: "backup", Time: old, Owner: "b"})
	putLock(t, be, "a-prune", repository.LockInfo{Hostname: "otherhost", PID: 3, Command: "prune", Exclusive: true, Time: old, Owner: "c"})
	l, err := r.Lock(t.Context(), repository.LockOptions{Exclusive: true, Command: "prune"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if l.RecoveredBackups != 2 {
		t.Fatalf("recovered %d backups, want 2 (owners a and b)", l.RecoveredBackups)
	}
}

// A daemon removes the lock of a backup child it saw die: every object of
// that owner (two when it died mid-refresh), live-looking or not, and no
// other holder's.
func TestRemoveLocksOf(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	_, be := repotest.NewMem(t)
	r := repotest.Reopen(t, be, repository.Options{Now: func() time.Time { return now }, LockRefresh: time.Hour})
	putLock(t, be, "child-new", repository.LockInfo{Hostname: "otherhost", PID: 7, Command: "backup", Time: now, Owner: "child"})
	putLock(t, be, "child-old", repository.LockInfo{Hostname: "otherhost", PID: 7, Command: "backup", Time: now.Add(-time.Minute), Owner: "child"})
	putLock(t, be, "sibling", repository.LockInfo{Hostname: "otherhost", PID: 8, Command: "backup", Time: now, Owner: "sibling"})
	removed, err := r.RemoveLocksOf(t.Context(), "child")
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || countLocks(t, be) != 1 {
		t.Fatalf("removed %+v, %d locks left; want both of the child's removed, the sibling's kept", removed, countLocks(t, be))
	}
	if locks, err := r.ListLocks(t.Context()); err != nil || len(locks) != 1 || locks[0].Name != "sibling" {
		t.Fatalf("left %+v (%v), want the sibling's", locks, err)
	}
	if removed, err := r.RemoveLocksOf(t.Context(), "child"); err != nil || len(removed) != 0 {
		t.Fatalf("second removal: %+v, %v", removed, err)
	}
	if _, err := r.RemoveLocksOf(t.Context(), ""); err == nil {
		t.Fatal("an empty owner removed locks")
	}
}
