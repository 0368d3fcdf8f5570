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
// and source holds a live lock on this host. The check runs on the lock
// listings the repository makes before writing the lock (an overlapping
// backup already running refuses this one without a lock object of its
// own) and after (another backup may have locked between our listing and
// our write: both see each other then, and the rule picks one to yield).
// Of two such backups that lock at once, the later lock (then the larger
// owner) yields, so exactly one runs.
func (a *Archiver) lock(ctx context.Context, source string) (*repository.Lock, error) {
	return a.repo.Lock(ctx, repository.LockOptions{Command: "backup", Policy: a.opt.Policy, Source: source,
		Refuse: func(held, mine repository.LockInfo) error {
			if mine.Policy != "" && overlaps(held, mine) {
				return &repository.LockError{Holder: held, Err: ErrOverlap}
			}
			return nil
		}})
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
