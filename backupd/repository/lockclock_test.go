package repository_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

// storeClock is a shared backend whose store has a clock of its own.
type storeClock struct {
	backend.Backend
	clock *repotest.Clock
	err   error
}

func (s *storeClock) Unwrap() backend.Backend { return s.Backend }

func (s *storeClock) ServerTime(context.Context) (time.Time, error) {
	if s.err != nil {
		return time.Time{}, s.err
	}
	return s.clock.Now(), nil
}

var _ backend.ServerClock = (*storeClock)(nil)

// skewed is a host clock off the store's by d.
func skewed(c *repotest.Clock, d time.Duration) func() time.Time {
	return func() time.Time { return c.Now().Add(d) }
}

// Two hosts whose clocks are 20 minutes apart (±10 from the store's, far
// beyond StaleAfter and MaxClockSkew) share a store with a clock: each
// honours the other's live lock, and recovers the other's dead one once it
// has not been refreshed for StaleAfter by the store's clock.
func TestLocksDatedByTheStoresClock(t *testing.T) {
	server := repotest.NewClock(time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC))
	_, m := repotest.NewMem(t)
	be := &storeClock{Backend: m, clock: server}
	open := func(host string, skew time.Duration) *repository.Repo {
		return repotest.Reopen(t, be, repository.Options{Hostname: host, Now: skewed(server, skew), LockRefresh: time.Hour})
	}
	for _, tc := range []struct {
		name              string
		holderSkew, skew  time.Duration
		holderEx, otherEx bool
	}{
		{"holder ahead, exclusive wanted", 10 * time.Minute, -10 * time.Minute, false, true},
		{"holder behind, exclusive wanted", -10 * time.Minute, 10 * time.Minute, false, true},
		{"exclusive holder ahead, shared wanted", 10 * time.Minute, -10 * time.Minute, true, false},
		{"exclusive holder behind, shared wanted", -10 * time.Minute, 10 * time.Minute, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			holder, other := open("hosta", tc.holderSkew), open("hostb", tc.skew)
			l, err := holder.Lock(t.Context(), repository.LockOptions{Exclusive: tc.holderEx, Command: "backup"})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = l.Unlock() }()
			if got := l.Info().Time; !got.Equal(server.Now()) {
				t.Errorf("lock dated %v, want the store's %v", got, server.Now())
			}

			// Live (just taken, then 4 minutes old by the store's clock):
			// honoured.
			for _, age := range []time.Duration{0, 4 * time.Minute} {
				server.Add(age)
				ol, err := other.Lock(t.Context(), repository.LockOptions{Exclusive: tc.otherEx, Command: "prune"})
				if !errors.Is(err, repository.ErrLocked) {
					if ol != nil {
						_ = ol.Unlock()
					}
					t.Fatalf("lock %v old by the store: got %v, want ErrLocked", age, err)
				}
			}
			infos, err := other.Locks(t.Context())
			if err != nil || len(infos) != 1 {
				t.Fatalf("the other host sees %d live locks (%v), want the holder's", len(infos), err)
			}

			// Dead (not refreshed: its refresh is an hour away) for more
			// than StaleAfter by the store's clock: recovered, no human.
			server.Add(2 * time.Minute)
			ol, err := other.Lock(t.Context(), repository.LockOptions{Exclusive: tc.otherEx, Command: "prune"})
			if err != nil {
				t.Fatalf("dead lock not recovered: %v", err)
			}
			if tc.holderEx == false && ol.RecoveredBackups != 1 {
				t.Errorf("recovered %d backups, want 1", ol.RecoveredBackups)
			}
			if err := ol.Unlock(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Without the store's clock, taking a lock fails rather than judging
// others' locks by a host clock that may be skewed.
func TestLockFailsWithoutTheStoresClock(t *testing.T) {
	server := repotest.NewClock(time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC))
	_, m := repotest.NewMem(t)
	errDown := errors.New("store unreachable")
	be := &storeClock{Backend: m, clock: server, err: errDown}
	r := repotest.Reopen(t, be, repository.Options{Now: skewed(server, time.Hour)})
	if _, err := r.Lock(t.Context(), repository.LockOptions{Command: "backup"}); !errors.Is(err, errDown) {
		t.Fatalf("got %v, want the store's clock error", err)
	}
}

// A refresh dates the new lock object by the store's clock too.
func TestLockRefreshDatedByTheStoresClock(t *testing.T) {
	server := repotest.NewClock(time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC))
	_, m := repotest.NewMem(t)
	be := &storeClock{Backend: m, clock: server}
	r := repotest.Reopen(t, be, repository.Options{Now: skewed(server, -30*time.Minute), LockRefresh: 5 * time.Millisecond})
	l, err := r.Lock(t.Context(), repository.LockOptions{Command: "backup"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Unlock() }()
	server.Add(time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for {
		locks, err := r.ListLocks(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(locks) == 1 && locks[0].Info.Time.Equal(server.Now()) && !locks[0].Stale {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refresh dated %v by the store's clock: %+v", server.Now(), locks)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
