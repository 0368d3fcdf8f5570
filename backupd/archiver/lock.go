package archiver

import (
	"context"
	"errors"

	"github.com/meshbackup/backupd/backupd/repository"
)

// ErrOverlap means a backup of the same policy and source is already
// running on this host. It comes wrapped in a *repository.LockError naming
// the running backup's lock.
var ErrOverlap = errors.New("a backup of this policy and source is already running")

// lock takes the backup's shared repository lock, recording its policy and
// source in it, and refuses with ErrOverlap when a backup of the same policy
// and source holds a live lock on this host. Of two such backups that lock
// at once, the later lock (then the larger owner) yields, so exactly one
// runs.
func (a *Archiver) lock(ctx context.Context, source string) (*repository.Lock, error) {
	opt := a.repo.Options()
	// Before locking: an overlapping backup that is already running refuses
	// this one without a lock object of its own.
	if err := a.checkOverlap(ctx, repository.LockInfo{Hostname: opt.Hostname, Policy: a.opt.Policy, Source: source, Acquired: opt.Now()}); err != nil {
		return nil, err
	}
	l, err := a.repo.Lock(ctx, repository.LockOptions{Command: "backup", Policy: a.opt.Policy, Source: source})
	if err != nil {
		return nil, err
	}
	// After locking: another backup may have locked between our check and
	// our write. Both see each other now; the rule picks one to yield.
	if err := a.checkOverlap(ctx, l.Info()); err != nil {
		_ = l.Unlock()
		return nil, err
	}
	return l, nil
}

// checkOverlap returns ErrOverlap, in a *repository.LockError naming the
// holder, when a live lock overlaps a backup's lock mine (see overlaps).
func (a *Archiver) checkOverlap(ctx context.Context, mine repository.LockInfo) error {
	if mine.Policy == "" {
		return nil
	}
	locks, err := a.repo.ListLocks(ctx)
	if err != nil {
		return err
	}
	for _, held := range locks {
		if !held.Stale && overlaps(held.Info, mine) {
			return &repository.LockError{Name: held.Name, Holder: held.Info, Err: ErrOverlap}
		}
	}
	return nil
}

// overlaps reports whether the backup holding lock held makes the backup
// holding (or about to take) lock mine yield: a shared lock of another owner
// on the same host with the same policy and source, acquired earlier, or at
// the same time by a smaller owner.
func overlaps(held, mine repository.LockInfo) bool {
	if held.Exclusive || held.Owner == mine.Owner || held.Hostname != mine.Hostname ||
		held.Policy != mine.Policy || held.Source != mine.Source {
		return false
	}
	return held.Acquired.Before(mine.Acquired) || held.Acquired.Equal(mine.Acquired) && held.Owner < mine.Owner
}
