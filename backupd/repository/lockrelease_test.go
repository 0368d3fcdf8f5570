package repository_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/fault"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

var errStoreDown = errors.New("store down")

// A lock whose object could not be removed at Unlock (the store was down)
// does not block the process that released it: its next lock, shared or
// exclusive, through the same Repo or one made by Fresh, removes the
// object and goes ahead. Without that, a long-running daemon found its own
// backup's lock (its PID alive) and refused every backup of the policy as
// overlapping, and every prune, until the lease ran out.
func TestReleasedLockLeftByAFailedRemove(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fresh bool
		next  repository.LockOptions
	}{
		{"shared, same repo", false, repository.LockOptions{Command: "backup", Policy: "p", Source: "/src"}},
		{"exclusive, same repo", false, repository.LockOptions{Exclusive: true, Command: "prune"}},
		{"exclusive, fresh repo", true, repository.LockOptions{Exclusive: true, Command: "prune"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, mb := repotest.NewMem(t)
			var down atomic.Bool
			be := &fault.Backend{Backend: mb, Hook: func(op fault.Op, h backend.Handle) error {
				if down.Load() && op == fault.OpRemove && h.Type == backend.LockFile {
					return errStoreDown
				}
				return nil
			}}
			r := repotest.Reopen(t, be, repository.Options{})
			l, err := r.Lock(t.Context(), repository.LockOptions{Command: "backup", Policy: "p", Source: "/src"})
			if err != nil {
				t.Fatal(err)
			}
			down.Store(true)
			if err := l.Unlock(); !errors.Is(err, errStoreDown) {
				t.Fatalf("Unlock with the store down: %v, want its error", err)
			}
			down.Store(false)
			if n := countLocks(t, mb); n != 1 {
				t.Fatalf("%d lock objects after the failed remove, want 1", n)
			}
			next := r
			if tc.fresh {
				if next, err = r.Fresh(); err != nil {
					t.Fatal(err)
				}
			}
			if locks, err := next.Locks(t.Context()); err != nil || len(locks) != 0 {
				t.Fatalf("Locks: %v %v, want none live", locks, err)
			}
			l2, err := next.Lock(t.Context(), tc.next)
			if err != nil {
				t.Fatalf("next lock of the process: %v", err)
			}
			if err := l2.Unlock(); err != nil {
				t.Fatal(err)
			}
			if n := countLocks(t, mb); n != 0 {
				t.Fatalf("%d lock objects left", n)
			}
		})
	}
	// Another process (another Repo opened on the store) still honours the
	// object until its lease runs out: it cannot know the holder let go.
	_, mb := repotest.NewMem(t)
	var down atomic.Bool
	be := &fault.Backend{Backend: mb, Hook: func(op fault.Op, h backend.Handle) error {
		if down.Load() && op == fault.OpRemove {
			return errStoreDown
		}
		return nil
	}}
	r := repotest.Reopen(t, be, repository.Options{})
	l, err := r.Lock(t.Context(), repository.LockOptions{Command: "backup"})
	if err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	_ = l.Unlock()
	down.Store(false)
	other := repotest.Reopen(t, mb, repository.Options{Hostname: "otherhost"})
	if _, err := other.Lock(t.Context(), repository.LockOptions{Exclusive: true, Command: "prune"}); !errors.Is(err, repository.ErrLocked) {
		t.Fatalf("another host's exclusive lock: %v, want ErrLocked", err)
	}
}
