package repository

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
)

// LockInfo is the content of a lock object. Locks are leases: the holder
// writes a fresh lock object every LockRefresh and removes the old one; a
// lock whose Time is older than StaleAfter, or whose holder on this host is
// gone, is stale and is removed by whoever finds it.
//
// # Whose clock
//
// Time and Acquired are dated, and others' locks judged, by the lock
// clock (Repo.lockNow):
//
//   - When the backend implements backend.ServerClock (an object store
//     shared by hosts), the lock clock is the host's clock corrected by
//     its offset to the store's, measured with ServerTime (one request,
//     or none when the store answered another one moments before) when a
//     lock is taken, at each refresh, and before locks are listed for
//     judging when this Repo holds none. Host clocks then may disagree by
//     any amount: every host dates by the store's clock, give or take half
//     a round trip and the store clock's resolution (a second for an HTTP
//     Date). If the store's time cannot be read, taking the lock fails
//     rather than judging by a skewed host clock; a refresh keeps the last
//     offset.
//   - Otherwise (a local disk, usually one host) the host's clock is the
//     lock clock, and the hosts sharing a repository must agree: a holder
//     whose clock runs up to StaleAfter−LockRefresh (4 minutes by default)
//     behind another's, or up to MaxClockSkew (5 minutes) ahead, is still
//     honoured; beyond that its live lock looks stale to the other host.
type LockInfo struct {
	Exclusive bool      `json:"exclusive"`
	Hostname  string    `json:"hostname"`
	PID       int       `json:"pid"`
	Time      time.Time `json:"time"`
	Command   string    `json:"command"`
	Policy    string    `json:"policy,omitempty"`
	Source    string    `json:"source,omitempty"`
	// Owner is the same for every object one lock holder writes.
	Owner string `json:"owner"`
	// Acquired is when the lock was taken; refreshes keep it.
	Acquired time.Time `json:"acquired"`
}

// ErrLocked means a conflicting, live lock is held.
var ErrLocked = errors.New("repository is locked")

// LockError names the lock that blocked.
type LockError struct {
	Name   string // object name under locks/
	Holder LockInfo
	Err    error
}

func (e *LockError) Error() string {
	kind := "shared"
	if e.Holder.Exclusive {
		kind = "exclusive"
	}
	since := e.Holder.Acquired
	if since.IsZero() {
		since = e.Holder.Time
	}
	return fmt.Sprintf("%v: %s lock locks/%s held by %s (pid %d, command %q) since %s, renewed %s; if that process is gone, 'backupd unlock' removes stale locks",
		e.Err, kind, e.Name, e.Holder.Hostname, e.Holder.PID, e.Holder.Command,
		since.UTC().Format(time.RFC3339), e.Holder.Time.UTC().Format(time.RFC3339))
}

func (e *LockError) Unwrap() error { return e.Err }

// Lock is a held lock. Its Context is cancelled if the lease is lost.
type Lock struct {
	r    *Repo
	info LockInfo
	mu   sync.Mutex
	name string
	// leaked is set when a refresh could not remove the object it
	// replaced.
	leaked bool
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
	// RecoveredBackups counts the backups whose stale locks were removed
	// while taking this lock: those backups died, and may have left
	// unindexed packs. A backup killed mid-refresh leaves two lock objects
	// (the new one written, the old one not yet removed): it counts once.
	RecoveredBackups int
}

// Context is cancelled when the lock can no longer be kept alive.
func (l *Lock) Context() context.Context { return l.ctx }

// Info returns the lock's metadata as stored (the time of its first
// object).
func (l *Lock) Info() LockInfo { return l.info }

// releasedLocks are the owners (LockInfo.Owner) of the locks this process
// released, or gave up taking, whose lock objects it could not remove (the
// store was unreachable at Unlock, or at a refresh the old object's
// removal failed). Such an object looks live to this process for as long
// as it runs: its PID is alive, and to a daemon that is a lock of its own
// policy and source (archiver.ErrOverlap) until the lease runs out. Every
// listing of the locks removes the objects of these owners and leaves
// them out.
type releasedLocks struct {
	mu     sync.Mutex
	owners map[string]bool
}

func (rl *releasedLocks) add(owner string) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.owners == nil {
		rl.owners = map[string]bool{}
	}
	rl.owners[owner] = true
}

func (rl *releasedLocks) has(owner string) bool {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.owners[owner]
}

type storedLock struct {
	name string
	info LockInfo
}

func (r *Repo) listLocks(ctx context.Context) ([]storedLock, error) {
	var names []string
	if err := r.be.List(ctx, backend.LockFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	var out []storedLock
	for _, n := range names {
		// This Repo's own lock objects are not read back: their content
		// is what it wrote (a lock object is never rewritten).
		if li, ok := r.ownLock(n); ok {
			out = append(out, storedLock{n, li})
			continue
		}
		b, err := backend.LoadAll(ctx, r.be, backend.Handle{Type: backend.LockFile, Name: n})
		if errors.Is(err, backend.ErrNotFound) {
			continue // released meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("load lock %s: %w", n, err)
		}
		var li LockInfo
		if err := json.Unmarshal(b, &li); err != nil {
			// An unreadable lock cannot be honoured; treat it as stale.
			r.log.Warn("removing unreadable lock", "lock", n, "err", err)
			_ = r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: n})
			continue
		}
		// Invariant: a lock this process released is never honoured, by
		// this process or (once removed) by others.
		if r.released.has(li.Owner) {
			r.log.Info("removing a lock this process released earlier but could not remove then", "lock", n, "command", li.Command)
			if err := r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: n}); err != nil && !errors.Is(err, backend.ErrNotFound) {
				r.log.Warn("could not remove a lock this process released", "lock", n, "err", err)
			}
			continue
		}
		out = append(out, storedLock{n, li})
	}
	return out, nil
}

// stale reports whether a lock's lease has run out, its holder on this
// host has died, or it is dated further in the future than the clock skew
// allowed between hosts (MaxClockSkew): such a lock would otherwise never
// go stale (docs/DESIGN.md §3.4).
//
// now is the lock clock's time (lockNow).
func (r *Repo) stale(li LockInfo, now time.Time) bool {
	if now.Sub(li.Time) > r.opt.StaleAfter {
		return true
	}
	if li.Time.Sub(now) > r.opt.MaxClockSkew {
		return true
	}
	if li.Hostname == r.opt.Hostname && li.PID > 0 {
		if err := syscall.Kill(li.PID, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
	}
	return false
}

// lockNow returns the lock clock's time (see LockInfo): the host's clock,
// corrected by its offset to the store's when the backend implements
// backend.ServerClock. With measure, or when no offset was measured yet,
// it asks the store first.
func (r *Repo) lockNow(ctx context.Context, measure bool) (time.Time, error) {
	sc, ok := backend.As[backend.ServerClock](r.be)
	if !ok {
		return r.opt.Now(), nil
	}
	r.clockMu.Lock()
	offset, have := r.clockOffset, r.clockMeasured
	r.clockMu.Unlock()
	if measure || !have {
		before := r.opt.Now()
		st, err := sc.ServerTime(ctx)
		after := r.opt.Now()
		if err != nil {
			if !have {
				return time.Time{}, fmt.Errorf("read the store's clock to date locks: %w", err)
			}
			r.log.Warn("cannot read the store's clock; dating locks by the last offset", "offset", offset, "err", err)
		} else {
			// The store read its clock somewhere in the round trip:
			// assume the middle.
			offset = st.Sub(before.Add(after.Sub(before) / 2))
			r.clockMu.Lock()
			r.clockOffset, r.clockMeasured = offset, true
			r.clockMu.Unlock()
		}
	}
	return r.opt.Now().Add(offset), nil
}

// conflict returns the first live lock that blocks a request, removing the
// stale ones it meets.
func (r *Repo) conflict(ctx context.Context, want LockInfo, refuse func(held, mine LockInfo) error, recovered map[string]bool) (*storedLock, error) {
	locks, err := r.listLocks(ctx)
	if err != nil {
		return nil, err
	}
	now, err := r.lockNow(ctx, false)
	if err != nil {
		return nil, err
	}
	live := locks[:0]
	for _, l := range locks {
		if l.info.Owner == want.Owner {
			continue
		}
		if r.stale(l.info, now) {
			r.log.Info("removing stale lock", "lock", l.name, "hostname", l.info.Hostname, "pid", l.info.PID,
				"since", l.info.Time.UTC().Format(time.RFC3339))
			if err := r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: l.name}); err != nil {
				return nil, err
			}
			if l.info.Command == "backup" {
				// By owner: one lock may have two objects.
				key := l.info.Owner
				if key == "" {
					key = "name:" + l.name
				}
				recovered[key] = true
			}
			continue
		}
		live = append(live, l)
	}
	if refuse != nil {
		for _, l := range live {
			if err := refuse(l.info, want); err != nil {
				var le *LockError
				if errors.As(err, &le) && le.Name == "" {
					le.Name = l.name
				}
				return nil, err
			}
		}
	}
	// Another exclusive holder first: an exclusive lock waits out only
	// shared ones (Options.ExclusiveLockWait).
	for _, l := range live {
		if l.info.Exclusive {
			sl := l
			return &sl, nil
		}
	}
	if want.Exclusive && len(live) > 0 {
		sl := live[0]
		return &sl, nil
	}
	return nil, nil
}

// Locks returns the metadata of the live locks, this Repo's own included.
// Stale locks are left out, not removed: the next Lock removes them (and
// counts the backups among them in RecoveredBackups).
func (r *Repo) Locks(ctx context.Context) ([]LockInfo, error) {
	locks, err := r.listLocks(ctx)
	if err != nil {
		return nil, err
	}
	now, err := r.lockNow(ctx, false)
	if err != nil {
		return nil, err
	}
	var out []LockInfo
	for _, l := range locks {
		if !r.stale(l.info, now) {
			out = append(out, l.info)
		}
	}
	return out, nil
}

// LockOptions describe a lock to take.
type LockOptions struct {
	// Exclusive asks for an exclusive lock; otherwise it is shared.
	Exclusive bool
	// Command names the operation holding the lock, for messages.
	Command string
	// Policy and Source are metadata recorded in the lock: a backup
	// records its own, so that others can tell which backup runs (see
	// Locks). The repository gives them no meaning.
	Policy, Source string
	// Refuse, if set, is asked about every live lock of another holder
	// that Lock finds, before it writes its lock object and again after
	// (mine is the lock being taken): an error makes Lock return it, and
	// remove its lock object if written. Locks it refuses are checked
	// before those that conflict. A backup refuses to run beside an
	// overlapping one this way, in the listings Lock makes anyway.
	Refuse func(held, mine LockInfo) error
}

// Lock takes a shared or exclusive lock. A shared lock conflicts only with
// exclusive ones; an exclusive lock with every other. The lease is
// refreshed until Unlock. A shared lock that meets another holder's
// exclusive one is tried again for up to Options.SharedLockWait; an
// exclusive lock that meets only shared ones waits for them to end for up
// to Options.ExclusiveLockWait, its own object written so that no new
// shared lock is taken meanwhile.
func (r *Repo) Lock(ctx context.Context, opt LockOptions) (*Lock, error) {
	var deadline time.Time // monotonic: not the lock's clock, which may be the store's
	if !opt.Exclusive && r.opt.SharedLockWait > 0 {
		deadline = time.Now().Add(r.opt.SharedLockWait)
	}
	for attempt := 0; ; attempt++ {
		l, err := r.lock(ctx, opt)
		var le *LockError
		if err == nil || deadline.IsZero() || !errors.Is(err, ErrLocked) || !errors.As(err, &le) || !le.Holder.Exclusive {
			return l, err
		}
		wait := min(time.Second<<min(attempt, 3), 5*time.Second) + mrand.N(time.Second)
		if time.Now().Add(wait).After(deadline) {
			return nil, err
		}
		if attempt == 0 {
			r.log.Info("waiting for another holder's exclusive lock", "lock", le.Name, "holder", le.Holder.Hostname,
				"command", le.Holder.Command, "wait_max_seconds", r.opt.SharedLockWait.Seconds())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (waiting for the exclusive lock locks/%s of %s)", context.Cause(ctx), le.Name, le.Holder.Hostname)
		case <-t.C:
		}
	}
}

// lock is one attempt of Lock.
func (r *Repo) lock(ctx context.Context, opt LockOptions) (*Lock, error) {
	var owner [8]byte
	_, _ = rand.Read(owner[:])
	now, err := r.lockNow(ctx, true)
	if err != nil {
		return nil, err
	}
	info := LockInfo{Exclusive: opt.Exclusive, Hostname: r.opt.Hostname, PID: os.Getpid(), Time: now, Acquired: now,
		Command: opt.Command, Policy: opt.Policy, Source: opt.Source, Owner: hex.EncodeToString(owner[:])}
	recovered := make(map[string]bool)
	check := func() error {
		holder, err := r.conflict(ctx, info, opt.Refuse, recovered)
		if err != nil {
			return err
		}
		if holder != nil {
			return &LockError{Name: holder.name, Holder: holder.info, Err: ErrLocked}
		}
		return nil
	}
	// waitable is a conflict an exclusive lock may wait out: only shared
	// holders in the way.
	waitable := func(err error) bool {
		var le *LockError
		return opt.Exclusive && r.opt.ExclusiveLockWait > 0 && errors.As(err, &le) && errors.Is(err, ErrLocked) && !le.Holder.Exclusive
	}
	if err := check(); err != nil && !waitable(err) {
		return nil, err
	}
	name, err := r.writeLock(ctx, info)
	if err != nil {
		return nil, err
	}
	// Check again: another writer may have locked between our list and
	// our write. Both may back off; neither proceeds against the other.
	err = check()
	if waitable(err) {
		err = r.waitShared(ctx, err, check, waitable)
	}
	if err != nil {
		if rerr := r.removeLock(context.WithoutCancel(ctx), name); rerr != nil && !errors.Is(rerr, backend.ErrNotFound) {
			r.released.add(info.Owner)
		}
		return nil, err
	}
	lctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	l := &Lock{r: r, info: info, name: name, ctx: lctx, cancel: cancel, done: make(chan struct{}), RecoveredBackups: len(recovered)}
	go l.refresh()
	return l, nil
}

// waitShared waits, for up to Options.ExclusiveLockWait, until check no
// longer finds the shared locks in the way of an exclusive one whose object
// is written (err is the first conflict). It returns check's last error:
// nil once they are gone, another exclusive holder's at once.
func (r *Repo) waitShared(ctx context.Context, err error, check func() error, waitable func(error) bool) error {
	var le *LockError
	errors.As(err, &le)
	r.log.Info("waiting for shared locks (backups) to end before taking the exclusive lock", "lock", le.Name,
		"holder", le.Holder.Hostname, "command", le.Holder.Command, "wait_max_seconds", r.opt.ExclusiveLockWait.Seconds())
	deadline := time.Now().Add(r.opt.ExclusiveLockWait)
	wait := 250 * time.Millisecond
	for waitable(err) {
		if time.Now().Add(wait).After(deadline) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (waiting for the shared lock locks/%s of %s)", context.Cause(ctx), le.Name, le.Holder.Hostname)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
		err = check()
		errors.As(err, &le)
	}
	return err
}

func (r *Repo) writeLock(ctx context.Context, info LockInfo) (string, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return "", err
	}
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	name := hex.EncodeToString(rnd[:])
	// The name is random: ErrExists can only be a retrying backend's
	// earlier attempt of this Save that stored it (backend/retry), and the
	// object is ours.
	if err := r.be.Save(ctx, backend.Handle{Type: backend.LockFile, Name: name}, bytes.NewReader(b)); err != nil && !errors.Is(err, backend.ErrExists) {
		return "", fmt.Errorf("write lock: %w", err)
	}
	r.lockMu.Lock()
	if r.ownLocks == nil {
		r.ownLocks = map[string]LockInfo{}
	}
	r.ownLocks[name] = info
	r.lockMu.Unlock()
	return name, nil
}

// ownLock returns the content of a lock object this Repo wrote.
func (r *Repo) ownLock(name string) (LockInfo, bool) {
	r.lockMu.Lock()
	defer r.lockMu.Unlock()
	li, ok := r.ownLocks[name]
	return li, ok
}

// removeLock removes a lock object this Repo wrote.
func (r *Repo) removeLock(ctx context.Context, name string) error {
	err := r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: name})
	r.lockMu.Lock()
	delete(r.ownLocks, name)
	r.lockMu.Unlock()
	return err
}

// refresh renews the lease until Unlock. It gives the lease up (cancelling
// the lock's context) when it cannot renew in time, when the process was
// stalled (suspended) for longer than is safe, or when its lock object was
// removed by someone who judged it stale.
func (l *Lock) refresh() {
	defer close(l.done)
	t := time.NewTicker(l.r.opt.LockRefresh)
	defer t.Stop()
	// Wall-clock time (no monotonic reading): a suspended host's
	// monotonic clock stops, its lease does not.
	lastOK := l.r.opt.Now().Round(0)
	limit := l.r.opt.StaleAfter * 3 / 4
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		if gap := l.r.opt.Now().Round(0).Sub(lastOK); gap > limit {
			l.cancel(fmt.Errorf("lost repository lock: not renewed for %s (process stalled?)", gap.Round(time.Second)))
			return
		}
		l.mu.Lock()
		old := l.name
		l.mu.Unlock()
		if _, err := l.r.be.Stat(l.ctx, backend.Handle{Type: backend.LockFile, Name: old}); errors.Is(err, backend.ErrNotFound) {
			l.cancel(errors.New("lost repository lock: it was removed as stale by another process"))
			return
		}
		info := l.info
		stamp, err := l.r.lockNow(l.ctx, true)
		if err != nil {
			l.r.log.Warn("lock refresh failed", "err", err)
			continue
		}
		info.Time = stamp
		name, err := l.r.writeLock(l.ctx, info)
		if err != nil {
			l.r.log.Warn("lock refresh failed", "err", err)
			continue
		}
		// The lease's own gap is measured on the host's clock: the
		// store's offset may change between refreshes.
		lastOK = l.r.opt.Now().Round(0)
		l.mu.Lock()
		l.name = name
		l.mu.Unlock()
		if err := l.r.removeLock(l.ctx, old); err != nil && !errors.Is(err, backend.ErrNotFound) {
			l.mu.Lock()
			l.leaked = true
			l.mu.Unlock()
		}
	}
}

// Unlock releases the lock. When its object cannot be removed (the store
// is unreachable) it returns the error, and the object is removed by this
// process's next listing of the locks (any Lock, Locks or ListLocks of a
// Repo of this one's, or of one Fresh made from it); other processes judge
// it stale when its lease runs out.
func (l *Lock) Unlock() error {
	l.cancel(errors.New("unlocked"))
	<-l.done
	l.mu.Lock()
	name, leaked := l.name, l.leaked
	l.mu.Unlock()
	err := l.r.removeLock(context.Background(), name)
	if leaked || err != nil && !errors.Is(err, backend.ErrNotFound) {
		l.r.released.add(l.info.Owner)
	}
	if err != nil {
		return fmt.Errorf("remove lock locks/%s: %w", name, err)
	}
	return nil
}

// StoredLock is a lock object as found, for unlock.
type StoredLock struct {
	Name  string   `json:"name"`
	Info  LockInfo `json:"info"`
	Stale bool     `json:"stale"`
}

// ListLocks returns every lock object, stale ones included and marked.
func (r *Repo) ListLocks(ctx context.Context) ([]StoredLock, error) {
	locks, err := r.listLocks(ctx)
	if err != nil {
		return nil, err
	}
	now, err := r.lockNow(ctx, false)
	if err != nil {
		return nil, err
	}
	out := make([]StoredLock, 0, len(locks))
	for _, l := range locks {
		out = append(out, StoredLock{Name: l.name, Info: l.info, Stale: r.stale(l.info, now)})
	}
	return out, nil
}

// RemoveLocks removes the stale locks, or with force every lock, and
// returns those it removed. Forcing is for a holder known to be gone whose
// lease has not run out yet: removing a live holder's lock makes it stop
// when it next renews (it finds its lock gone), but what it does until
// then is no longer excluded.
func (r *Repo) RemoveLocks(ctx context.Context, force bool) ([]StoredLock, error) {
	locks, err := r.ListLocks(ctx)
	if err != nil {
		return nil, err
	}
	removed := []StoredLock{}
	for _, l := range locks {
		if !l.Stale && !force {
			continue
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: l.Name}); err != nil {
			return removed, fmt.Errorf("remove lock locks/%s: %w", l.Name, err)
		}
		removed = append(removed, l)
	}
	return removed, nil
}

// RemoveLocksOf removes every lock object of one holder (LockInfo.Owner),
// live-looking or not, and returns those it removed. It is for a holder the
// caller knows is gone: a daemon whose backup child process died removes
// the child's lock once it has reaped it (docs/DESIGN.md §3.6), instead of
// leaving it to the process check of stale, which a reused PID would fool
// for a lease. A holder killed mid-refresh leaves two objects; both go.
func (r *Repo) RemoveLocksOf(ctx context.Context, owner string) ([]StoredLock, error) {
	if owner == "" {
		return nil, errors.New("remove locks: no owner given")
	}
	locks, err := r.ListLocks(ctx)
	if err != nil {
		return nil, err
	}
	removed := []StoredLock{}
	for _, l := range locks {
		if l.Info.Owner != owner {
			continue
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: l.Name}); err != nil && !errors.Is(err, backend.ErrNotFound) {
			return removed, fmt.Errorf("remove lock locks/%s: %w", l.Name, err)
		}
		removed = append(removed, l)
	}
	return removed, nil
}
