package main

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/s3/s3test"
	"github.com/meshbackup/backupd/backupd/repository"
)

// errDead is what a dead host's backend answers.
var errDead = errors.New("host is dead")

// deadable is a host's view of a shared backend that stops when the host
// dies: every operation then fails, so its locks are no longer refreshed
// (nor removed), as after a SIGKILL or a lost network.
type deadable struct {
	backend.Backend
	dead atomic.Bool
}

func (d *deadable) Unwrap() backend.Backend { return d.Backend }

func (d *deadable) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	if d.dead.Load() {
		return errDead
	}
	return d.Backend.Save(ctx, h, rd)
}

func (d *deadable) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if d.dead.Load() {
		return backend.FileInfo{}, errDead
	}
	return d.Backend.Stat(ctx, h)
}

func (d *deadable) Remove(ctx context.Context, h backend.Handle) error {
	if d.dead.Load() {
		return errDead
	}
	return d.Backend.Remove(ctx, h)
}

// s3Backend opens the backend of c's s3:// repository as the commands do
// (location, the retry layer), without hooks.
func (c *cli) s3Backend() backend.Backend {
	c.t.Helper()
	g, _, _ := c.globals(false)
	g.hooks = testHooks{}
	spec, err := g.spec()
	if err != nil {
		c.t.Fatal(err)
	}
	be, err := g.openBackend(c.t.Context(), spec, repository.Options{}, false)
	if err != nil {
		c.t.Fatal(err)
	}
	return be
}

// Two hosts on one S3 repository whose clocks are 20 minutes apart (±10
// from the store's, beyond both the lease and the allowed skew): a live
// lock of either blocks the other's exclusive lock for longer than the
// lease, and once its holder dies (stops refreshing) the other recovers it
// after StaleAfter by the store's clock (the Date header), with no human.
func TestS3LocksWithSkewedClocks(t *testing.T) {
	srv := s3test.StartMinIO(t)
	c := s3CLI(t, srv, "locks")
	c.init()
	const (
		staleAfter = 4 * time.Second
		refresh    = 500 * time.Millisecond
		// dateSlack is the resolution of the Date header the store's
		// clock is read from, and some.
		dateSlack = 1500 * time.Millisecond
	)
	open := func(be backend.Backend, host string, skew time.Duration) *repository.Repo {
		t.Helper()
		r, err := repository.Open(t.Context(), be, []byte("correct horse"), repository.Options{
			Hostname: host, Now: func() time.Time { return time.Now().Add(skew) },
			LockRefresh: refresh, StaleAfter: staleAfter,
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tc := range []struct {
		name                  string
		holderSkew, otherSkew time.Duration
		holderExclusive       bool
	}{
		{"holder ahead", 10 * time.Minute, -10 * time.Minute, false},
		{"holder behind", -10 * time.Minute, 10 * time.Minute, false},
		{"exclusive holder ahead", 10 * time.Minute, -10 * time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hb := &deadable{Backend: c.s3Backend()}
			holder := open(hb, "hosta", tc.holderSkew)
			other := open(c.s3Backend(), "hostb", tc.otherSkew)
			l, err := holder.Lock(t.Context(), repository.LockOptions{Exclusive: tc.holderExclusive, Command: "backup"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Unlock() })

			// Live: refused for longer than the lease.
			for until := time.Now().Add(staleAfter + dateSlack); time.Now().Before(until); time.Sleep(300 * time.Millisecond) {
				ol, err := other.Lock(t.Context(), repository.LockOptions{Exclusive: true, Command: "prune"})
				if err == nil {
					_ = ol.Unlock()
					t.Fatalf("an exclusive lock was granted beside a live lock of a host %v off", tc.holderSkew-tc.otherSkew)
				}
				if !errors.Is(err, repository.ErrLocked) {
					t.Fatal(err)
				}
			}
			if l.Context().Err() != nil {
				t.Fatalf("the holder lost its live lock: %v", context.Cause(l.Context()))
			}

			// Dead: recovered after StaleAfter, not before.
			hb.dead.Store(true)
			died := time.Now()
			for {
				ol, err := other.Lock(t.Context(), repository.LockOptions{Exclusive: true, Command: "prune"})
				if err == nil {
					if waited := time.Since(died); waited < staleAfter-refresh-dateSlack {
						t.Errorf("the dead holder's lock was recovered %v after its death, before its lease of %v ran out", waited, staleAfter)
					}
					if ol.RecoveredBackups != 1 {
						// Dying mid-refresh leaves two objects of the lock.
						t.Errorf("recovered %d backups, want the dead one", ol.RecoveredBackups)
					}
					if err := ol.Unlock(); err != nil {
						t.Fatal(err)
					}
					break
				}
				if !errors.Is(err, repository.ErrLocked) {
					t.Fatal(err)
				}
				if time.Since(died) > staleAfter+refresh+2*dateSlack {
					t.Fatalf("the dead holder's lock still blocks %v after its death (lease %v): %v", time.Since(died), staleAfter, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}
