package repository_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/fault"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

func countLocks(t *testing.T, be backend.Backend) int {
	t.Helper()
	n := 0
	_ = be.List(t.Context(), backend.LockFile, func(backend.FileInfo) error { n++; return nil })
	return n
}

func TestLockSharedAndExclusive(t *testing.T) {
	r, be := repotest.NewMem(t)
	ctx := t.Context()
	a, err := r.Lock(ctx, repository.LockOptions{Command: "backup", Policy: "p1", Source: "/src/a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Lock(ctx, repository.LockOptions{Command: "backup", Policy: "p2", Source: "/src/b"})
	if err != nil {
		t.Fatalf("second shared lock refused: %v", err)
	}
	if _, err := r.Lock(ctx, repository.LockOptions{Exclusive: true, Command: "prune"}); !errors.Is(err, repository.ErrLocked) {
		t.Fatalf("exclusive lock beside shared ones: want ErrLocked, got %v", err)
	}
	_ = a.Unlock()
	_ = b.Unlock()
	x, err := r.Lock(ctx, repository.LockOptions{Exclusive: true, Command: "prune"})
	if err != nil {
		t.Fatalf("exclusive lock after release: %v", err)
	}
	if _, err := r.Lock(ctx, repository.LockOptions{Command: "backup", Policy: "p1", Source: "/src/a"}); !errors.Is(err, repository.ErrLocked) {
		t.Fatalf("shared lock beside an exclusive one: want ErrLocked, got %v", err)
	}
	_ = x.Unlock()
	if n := countLocks(t, be); n != 0 {
		t.Fatalf("%d lock objects left after unlock", n)
	}
}

// Locks reports the live locks' metadata and leaves stale locks for Lock to
// remove.
func TestLocksReportsLiveLocks(t *testing.T) {
	clock := repotest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	_, be := repotest.NewMem(t)
	opt := repository.Options{Now: clock.Now, LockRefresh: time.Hour, StaleAfter: 5 * time.Minute}
	r := repotest.Reopen(t, be, opt)
	ctx := t.Context()
	l, err := r.Lock(ctx, repository.LockOptions{Command: "backup", Policy: "p1", Source: "/src"})
	if err != nil {
		t.Fatal(err)
	}
	// Shared locks of the same policy and source are the archiver's
	// concern, not the repository's.
	l2, err := r.Lock(ctx, repository.LockOptions{Command: "backup", Policy: "p1", Source: "/src"})
	if err != nil {
		t.Fatalf("second shared lock refused: %v", err)
	}
	_ = l2.Unlock()
	locks, err := r.Locks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != 1 || locks[0].Owner != l.Info().Owner || locks[0].Policy != "p1" || locks[0].Source != "/src" || locks[0].Exclusive {
		t.Fatalf("Locks: got %+v, want the one held lock %+v", locks, l.Info())
	}
	clock.Add(6 * time.Minute)
	if locks, err := r.Locks(ctx); err != nil || len(locks) != 0 {
		t.Fatalf("stale lock reported as live: %+v, %v", locks, err)
	}
	if n := countLocks(t, be); n != 1 {
		t.Fatalf("Locks removed a stale lock: %d lock objects", n)
	}
	_ = l.Unlock()
}

func TestStaleLocksAreRecovered(t *testing.T) {
	t.Run("lease expired", func(t *testing.T) {
		clock := repotest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
		_, be := repotest.NewMem(t)
		opt := repository.Options{Now: clock.Now, LockRefresh: time.Hour, StaleAfter: 5 * time.Minute, Hostname: "node-a"}
		dead := repotest.Reopen(t, be, opt)
		if _, err := dead.Lock(t.Context(), repository.LockOptions{Exclusive: true, Command: "prune"}); err != nil {
			t.Fatal(err)
		}
		// The holder never refreshes (it "died" on another node).
		opt.Hostname = "node-b"
		other := repotest.Reopen(t, be, opt)
		if _, err := other.Lock(t.Context(), repository.LockOptions{Command: "backup", Policy: "p", Source: "/s"}); !errors.Is(err, repository.ErrLocked) {
			t.Fatalf("fresh exclusive lock must block: %v", err)
		}
		clock.Add(6 * time.Minute)
		l, err := other.Lock(t.Context(), repository.LockOptions{Command: "backup", Policy: "p", Source: "/s"})
		if err != nil {
			t.Fatalf("stale lock still blocks: %v", err)
		}
		_ = l.Unlock()
		if n := countLocks(t, be); n != 0 {
			t.Fatalf("stale lock not removed: %d locks", n)
		}
	})
	t.Run("holder process gone", func(t *testing.T) {
		r, be := repotest.NewMem(t)
		cmd := exec.Command("true")
		if err := cmd.Run(); err != nil {
			t.Skip("no 'true' binary")
		}
		info := repository.LockInfo{Exclusive: true, Hostname: "testhost", PID: cmd.Process.Pid, Time: time.Now(), Command: "prune", Owner: "gone"}
		b, _ := json.Marshal(info)
		if err := be.Save(t.Context(), backend.Handle{Type: backend.LockFile, Name: "deadbeef"}, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		l, err := r.Lock(t.Context(), repository.LockOptions{Command: "backup", Policy: "p", Source: "/s"})
		if err != nil {
			t.Fatalf("lock of a dead local process blocks: %v", err)
		}
		_ = l.Unlock()
	})
}

func TestLockRefreshAndLeaseLoss(t *testing.T) {
	_, mb := repotest.NewMem(t)
	var failing atomic.Bool
	be := &fault.Backend{Backend: mb, Hook: func(op fault.Op, h backend.Handle) error {
		if failing.Load() && op == fault.OpSave {
			return errors.New("injected outage")
		}
		return nil
	}}
	r := repotest.Reopen(t, be, repository.Options{LockRefresh: 10 * time.Millisecond, StaleAfter: 2 * time.Second})
	l, err := r.Lock(t.Context(), repository.LockOptions{Command: "backup", Policy: "p", Source: "/s"})
	if err != nil {
		t.Fatal(err)
	}
	// While refreshes succeed, the lease stays alive and one lock object
	// exists at a time.
	time.Sleep(300 * time.Millisecond)
	if err := l.Context().Err(); err != nil {
		t.Fatalf("lease lost while refreshes succeed: %v", err)
	}
	failing.Store(true)
	select {
	case <-l.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("lease loss not signalled")
	}
	failing.Store(false)
	_ = l.Unlock()
}

// A holder whose lock object was removed (judged stale elsewhere) gives up.
func TestLockRemovedByOthersIsLost(t *testing.T) {
	_, mb := repotest.NewMem(t)
	r := repotest.Reopen(t, mb, repository.Options{LockRefresh: 10 * time.Millisecond, StaleAfter: 10 * time.Second})
	l, err := r.Lock(t.Context(), repository.LockOptions{Command: "backup", Policy: "p", Source: "/s"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	_ = mb.List(t.Context(), backend.LockFile, func(fi backend.FileInfo) error { names = append(names, fi.Name); return nil })
	for _, n := range names {
		_ = mb.Remove(t.Context(), backend.Handle{Type: backend.LockFile, Name: n})
	}
	select {
	case <-l.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a removed lock was not noticed")
	}
	_ = l.Unlock()
}

// Taking a lock reads back none of the Repo's own lock objects, only the
// other holders' (once per listing: before and after writing its own).
func TestLockReadsOnlyOthersLocks(t *testing.T) {
	_, m := repotest.NewMem(t)
	var loads atomic.Int32
	be := &fault.Backend{Backend: m, Hook: func(op fault.Op, h backend.Handle) error {
		if op == fault.OpLoad && h.Type == backend.LockFile {
			loads.Add(1)
		}
		return nil
	}}
	ctx := t.Context()
	for _, tc := range []struct {
		name   string
		others int
		want   int32
	}{
		{"alone", 0, 0},
		{"beside another holder", 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range tc.others {
				other, err := repotest.Reopen(t, m, repository.Options{}).Lock(ctx, repository.LockOptions{Command: "backup"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = other.Unlock() })
			}
			r := repotest.Reopen(t, be, repository.Options{})
			loads.Store(0)
			l, err := r.Lock(ctx, repository.LockOptions{Command: "backup", Refuse: func(held, mine repository.LockInfo) error {
				if held.Owner == mine.Owner {
					t.Errorf("Refuse asked about the lock's own object")
				}
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			if got := loads.Load(); got != tc.want {
				t.Errorf("%d lock objects read, want %d", got, tc.want)
			}
			_ = l.Unlock()
		})
	}
}

// A lock Refuse refuses is not taken, and its object is removed.
func TestLockRefuse(t *testing.T) {
	r, be := repotest.NewMem(t)
	ctx := t.Context()
	held, err := r.Lock(ctx, repository.LockOptions{Command: "backup", Policy: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	refused := errors.New("refused")
	_, err = repotest.Reopen(t, be, repository.Options{}).Lock(ctx, repository.LockOptions{Command: "backup",
		Refuse: func(h, _ repository.LockInfo) error {
			if h.Policy == "p" {
				return refused
			}
			return nil
		}})
	if !errors.Is(err, refused) {
		t.Fatalf("lock beside a refused holder: %v, want the Refuse error", err)
	}
	if n := countLocks(t, be); n != 1 {
		t.Errorf("%d lock objects, want only the holder's", n)
	}
}

// SharedLockWait: a shared lock (a backup's) that meets another holder's
// exclusive lock (retention) waits for it to go instead of failing; it
// still fails when the exclusive lock outlasts the wait, and at once
// without a wait. An exclusive lock never waits. A cancelled context ends
// the wait.
func TestSharedLockWaitsForAnExclusiveOne(t *testing.T) {
	ctx := t.Context()
	_, be := repotest.NewMem(t)
	holder := repotest.Reopen(t, be, repository.Options{Hostname: "leader"})
	backup := func(wait time.Duration) *repository.Repo {
		return repotest.Reopen(t, be, repository.Options{Hostname: "node-b", SharedLockWait: wait})
	}
	shared := repository.LockOptions{Command: "backup", Policy: "p", Source: "/src"}

	x, err := holder.Lock(ctx, repository.LockOptions{Exclusive: true, Command: "forget"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup(0).Lock(ctx, shared); !errors.Is(err, repository.ErrLocked) {
		t.Fatalf("no wait: want ErrLocked, got %v", err)
	}
	if _, err := backup(1500*time.Millisecond).Lock(ctx, shared); !errors.Is(err, repository.ErrLocked) {
		t.Fatalf("an exclusive lock held longer than the wait: want ErrLocked, got %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(300*time.Millisecond, cancel)
	if _, err := backup(time.Minute).Lock(cctx, shared); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while waiting: want context.Canceled, got %v", err)
	}
	released := make(chan struct{})
	time.AfterFunc(1500*time.Millisecond, func() {
		_ = x.Unlock()
		close(released)
	})
	l, err := backup(time.Minute).Lock(ctx, shared)
	if err != nil {
		t.Fatalf("a shared lock waiting for an exclusive one released meanwhile: %v", err)
	}
	select {
	case <-released:
	default:
		t.Fatal("the shared lock was taken while the exclusive one was held")
	}
	// The other way round: an exclusive lock does not wait for a backup.
	waiting := repotest.Reopen(t, be, repository.Options{Hostname: "leader", SharedLockWait: time.Minute})
	if _, err := waiting.Lock(ctx, repository.LockOptions{Exclusive: true, Command: "forget"}); !errors.Is(err, repository.ErrLocked) {
		t.Fatalf("exclusive lock beside a backup's: want ErrLocked at once, got %v", err)
	}
	_ = l.Unlock()
	if n := countLocks(t, be); n != 0 {
		t.Fatalf("%d lock objects left", n)
	}
}

// ExclusiveLockWait: an exclusive lock (the leader's retention) that meets
// backups' shared locks writes its object and waits for them to end; a
// backup starting meanwhile waits behind it instead of keeping it out, and
// goes on once it is released. It gives up (its object removed) when the
// shared lock outlasts the wait, and at once when another exclusive lock
// is in the way.
func TestExclusiveLockWaitsOutSharedOnes(t *testing.T) {
	ctx := t.Context()
	_, be := repotest.NewMem(t)
	nodeA := repotest.Reopen(t, be, repository.Options{Hostname: "node-a"})
	nodeB := repotest.Reopen(t, be, repository.Options{Hostname: "node-b", SharedLockWait: time.Minute})
	leader := func(wait time.Duration) *repository.Repo {
		return repotest.Reopen(t, be, repository.Options{Hostname: "leader", ExclusiveLockWait: wait})
	}
	shared := repository.LockOptions{Command: "backup", Policy: "p", Source: "/src"}
	forget := repository.LockOptions{Exclusive: true, Command: "forget"}

	first, err := nodeA.Lock(ctx, shared)
	if err != nil {
		t.Fatal(err)
	}
	// No wait: the exclusive lock fails at once, and leaves no object.
	if _, err := leader(0).Lock(ctx, forget); !errors.Is(err, repository.ErrLocked) {
		t.Fatalf("no wait: want ErrLocked, got %v", err)
	}
	// A wait shorter than the backup: it gives up and removes its object.
	if _, err := leader(600*time.Millisecond).Lock(ctx, forget); !errors.Is(err, repository.ErrLocked) {
		t.Fatalf("a backup outlasting the wait: want ErrLocked, got %v", err)
	}
	if n := countLocks(t, be); n != 1 {
		t.Fatalf("%d lock objects after the exclusive lock gave up, want the backup's only", n)
	}

	type result struct {
		l   *repository.Lock
		err error
		at  time.Time
	}
	excl := make(chan result, 1)
	go func() {
		l, err := leader(30*time.Second).Lock(ctx, forget)
		excl <- result{l, err, time.Now()}
	}()
	// Once the exclusive lock's object is there, a new backup waits.
	deadline := time.Now().Add(10 * time.Second)
	for countLocks(t, be) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the waiting exclusive lock wrote no object")
		}
		time.Sleep(20 * time.Millisecond)
	}
	second := make(chan result, 1)
	go func() {
		l, err := nodeB.Lock(ctx, shared)
		second <- result{l, err, time.Now()}
	}()
	time.Sleep(700 * time.Millisecond)
	select {
	case r := <-second:
		t.Fatalf("a backup took its shared lock beside a waiting exclusive one (err %v)", r.err)
	case r := <-excl:
		t.Fatalf("the exclusive lock was taken while a backup held its shared one (err %v)", r.err)
	default:
	}
	releasedFirst := time.Now()
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	x := <-excl
	if x.err != nil {
		t.Fatalf("the exclusive lock, once the backup ended: %v", x.err)
	}
	if x.at.Before(releasedFirst) {
		t.Fatal("the exclusive lock was taken before the backup ended")
	}
	// Another exclusive lock is not waited for.
	if _, err := leader(30*time.Second).Lock(ctx, forget); !errors.Is(err, repository.ErrLocked) {
		t.Fatalf("beside another exclusive lock: want ErrLocked at once, got %v", err)
	}
	select {
	case r := <-second:
		t.Fatalf("the waiting backup took its lock while the exclusive one was held (err %v)", r.err)
	default:
	}
	releasedX := time.Now()
	if err := x.l.Unlock(); err != nil {
		t.Fatal(err)
	}
	s := <-second
	if s.err != nil {
		t.Fatalf("the backup waiting behind the exclusive lock: %v", s.err)
	}
	if s.at.Before(releasedX) {
		t.Fatal("the waiting backup was let in before the exclusive lock was released")
	}
	_ = s.l.Unlock()
	if n := countLocks(t, be); n != 0 {
		t.Fatalf("%d lock objects left", n)
	}
}
