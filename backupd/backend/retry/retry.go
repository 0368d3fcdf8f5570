// Package retry wraps a backend to retry operations that failed for a
// reason that may go away: the backends of this module do not retry
// (backend package doc), an object store's answers of 5xx, 429 or SlowDown,
// reset connections and timeouts are marked backend.Transient, and this
// wrapper tries such operations again with exponential backoff and full
// jitter.
//
// What is retried:
//   - an error for which backend.IsTransient is true, while the caller's
//     context is alive;
//   - the expiry of the per-attempt deadline (Options.Timeout) while the
//     caller's context is alive.
//
// Never retried: ErrNotFound, ErrExists, the cancellation or deadline of the
// caller's context, and any other error. Retrying stops as soon as the
// caller's context ends, including during a backoff sleep.
//
// Load verifies nothing itself, but when the Load fails with an error that
// matches backend.ErrIntegrity (the caller's fn found the bytes bad, or the
// backend's checksum failed) it fetches the object again, up to
// Options.IntegrityRefetches more times, then returns that error unchanged:
// bad bytes are never handed on, and an object that is damaged at rest is
// reported damaged. fn is called once per fetch; the backend contract
// already requires it to be idempotent.
//
// Save rewinds its reader to the start before every attempt. When an
// attempt fails ambiguously (a timeout or reset after the store may have
// kept the object) and a later attempt finds the name taken, Save returns
// that attempt's error matching backend.ErrExists, just as the backend
// would. Every object the repository saves under a name derived from its
// content (packs, index files, snapshots and other unpacked objects: the
// name is the hash of the content) is then already stored with the right
// content, and the repository treats ErrExists of those as success
// (repository finishPack, saveSealed), as it does for key files (named by
// their content too) and for locks and orphan hints (random names: only its
// own attempt can have taken one). Any other caller saving under a name not
// derived from the content must be ready to see ErrExists for an object its
// own earlier attempt stored; init's config is such a name, and an init
// whose config upload was answered ambiguously fails and must be checked by
// hand.
//
// List restarts a failed listing from the beginning. Names the caller's fn
// was already given in this List call are skipped on the restart, so fn
// never sees a name twice; the wrapper keeps the set of names seen for the
// duration of one List call (a few dozen bytes per object).
//
// Beyond the Backend interface: Wrap also retries the optional features of
// the backend it wraps (reading a store's clock, CleanTemp), which
// backend.As would otherwise find underneath, unretried; Do retries an
// operation the caller names, such as opening the store.
//
// Imports: backend only. Like all of the engine it never imports
// Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3); metrics count
// retries through Options.OnRetry.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
)

// Defaults of Options.
const (
	DefaultMaxAttempts        = 5
	DefaultBase               = 200 * time.Millisecond
	DefaultMax                = 10 * time.Second
	DefaultTimeout            = 2 * time.Minute
	DefaultIntegrityRefetches = 2
	DefaultRetryFor           = time.Minute
)

// NoTimeout as Options.Timeout disables the per-attempt deadline.
const NoTimeout time.Duration = -1

// Op names of OnRetry and of the log.
const (
	OpSave   = "save"
	OpLoad   = "load"
	OpStat   = "stat"
	OpList   = "list"
	OpRemove = "remove"
)

// Options tune the wrapper. Zero values take the defaults.
type Options struct {
	// MaxAttempts is the least number of attempts of one operation, the
	// first included, before it fails: 5 by default, about 3 s of backoff
	// on average with the default delays. RetryFor may allow more.
	MaxAttempts int
	// RetryFor is how long an operation that keeps failing transiently
	// (a store stopped or unreachable, answering 503 for a while) is tried
	// again after MaxAttempts, counted from its first attempt, the delays
	// growing up to Max: so an outage shorter than RetryFor
	// is ridden out, and one longer fails the operation once RetryFor has
	// passed. 1 minute by default, the order of restic's and kopia's
	// patience with a stopped store; negative: only MaxAttempts counts.
	// Once an operation has given up, the store counts as down until one
	// succeeds: operations meanwhile get MaxAttempts only.
	RetryFor time.Duration
	// Base and Max shape the backoff: before retry n (1-based) the
	// wrapper sleeps a uniformly random time in [0, min(Max, Base·2^(n-1)))
	// ("full jitter", so that many clients throttled at once spread out).
	// 200 ms and 10 s by default.
	Base, Max time.Duration
	// Timeout is the deadline of one attempt of Save, Load, Stat and
	// Remove; an attempt that runs out of it while the caller's context is
	// alive is retried. For List it bounds the wait for the next name (the
	// time fn runs is not counted), so a long listing is not cut off.
	// Default 2 minutes: a 16 MiB pack then needs about 140 KB/s to make
	// it, and a hung connection is given up within two minutes. Raise it
	// for larger packs on slow links. NoTimeout disables it. Load's
	// deadline covers fn, which reads the body.
	Timeout time.Duration
	// IntegrityRefetches is how many more times Load fetches an object
	// whose bytes failed verification (an error matching
	// backend.ErrIntegrity): 2 by default, separate from MaxAttempts.
	// Negative means none.
	IntegrityRefetches int
	// OnRetry, if set, is called before each retry, with the operation
	// name (OpSave...), the number of the attempt that failed (1-based)
	// and its error. It runs on the goroutine of the operation and must be
	// cheap; a metric counter is what it is for.
	OnRetry func(op string, attempt int, err error)
	// Logger gets one warning per retry (op, handle, attempt, delay, err).
	// Handles name objects by hash and type; no secret is logged. Nil
	// discards.
	Logger *slog.Logger
	// Rand is the source of jitter; a randomly seeded PCG by default. Tests
	// inject a seeded one. The wrapper serialises its use.
	Rand rand.Source
	// Sleep waits d or until ctx ends, returning ctx's error then. By
	// default a timer; tests inject one that records the delays.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock RetryFor is measured by; time.Now by default.
	// Tests inject one that the injected Sleep advances.
	Now func() time.Time
}

func (o *Options) applyDefaults() {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Base <= 0 {
		o.Base = DefaultBase
	}
	if o.Max <= 0 {
		o.Max = DefaultMax
	}
	if o.Max < o.Base {
		o.Max = o.Base
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.IntegrityRefetches == 0 {
		o.IntegrityRefetches = DefaultIntegrityRefetches
	}
	if o.IntegrityRefetches < 0 {
		o.IntegrityRefetches = 0
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Rand == nil {
		o.Rand = rand.NewPCG(rand.Uint64(), rand.Uint64())
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RetryFor == 0 {
		o.RetryFor = DefaultRetryFor
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Backend retries the operations of the backend it wraps. It is safe for
// concurrent use.
type Backend struct {
	be  backend.Backend
	opt Options

	mu  sync.Mutex
	rnd *rand.Rand
	// down (under mu) is set when an operation gives up and cleared when
	// one succeeds: while it is set the store is down and further
	// operations get MaxAttempts only, not RetryFor each, so a run's
	// cleanup after the failure (its index, its lock) does not wait out
	// RetryFor again and again.
	down bool
}

var (
	_ backend.Backend   = (*Backend)(nil)
	_ backend.Unwrapper = (*Backend)(nil)
)

// New wraps be.
func New(be backend.Backend, opt Options) *Backend {
	opt.applyDefaults()
	return &Backend{be: be, opt: opt, rnd: rand.New(opt.Rand)}
}

// Unwrap returns the wrapped backend, so that backend.As finds its optional
// features.
func (b *Backend) Unwrap() backend.Backend { return b.be }

// Location is the wrapped backend's.
func (b *Backend) Location() string { return b.be.Location() }

// delay is the backoff before retry n (1-based): uniform in
// [0, min(Max, Base·2^(n-1))).
func (b *Backend) delay(n int) time.Duration {
	ceil := b.opt.Base
	for i := 1; i < n && ceil < b.opt.Max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, b.opt.Max)
	b.mu.Lock()
	defer b.mu.Unlock()
	return time.Duration(b.rnd.Int64N(int64(ceil)))
}

// attemptCtx derives the context of one attempt, with the per-attempt
// deadline when timeout is set.
func (b *Backend) attemptCtx(ctx context.Context, timeout bool) (context.Context, context.CancelFunc) {
	if !timeout || b.opt.Timeout < 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, b.opt.Timeout)
}

// retryable reports whether an attempt that ran under actx and failed with
// err is worth another: the caller's ctx must be alive, and the error
// transient or the attempt's own deadline spent.
func retryable(ctx, actx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	// A spent deadline of the attempt comes first: a body cut off by it
	// may look like a short read, which the caller's fn reports as an
	// integrity failure.
	return errors.Is(actx.Err(), context.DeadlineExceeded) || backend.IsTransient(err)
}

// wait reports a failed attempt, then sleeps before retry n. A non-nil
// result (the caller's context ended) means to give up.
func (b *Backend) wait(ctx context.Context, op string, h backend.Handle, attempt int, err error) error {
	d := b.delay(attempt)
	if b.opt.OnRetry != nil {
		b.opt.OnRetry(op, attempt, err)
	}
	b.opt.Logger.WarnContext(ctx, "backend operation failed, retrying",
		"op", op, "handle", h.String(), "attempt", attempt, "delay", d, "err", err)
	if serr := b.opt.Sleep(ctx, d); serr != nil {
		return fmt.Errorf("%s %v: %w (attempt %d failed: %v)", op, h, serr, attempt, err)
	}
	return nil
}

// giveUp reports whether an operation that began at start and whose
// attempt n failed transiently is over: MaxAttempts made and RetryFor
// passed, or MaxAttempts alone while the store is known to be down (an
// operation gave up since the last that succeeded). It records a give-up.
func (b *Backend) giveUp(n int, start time.Time) bool {
	if n < b.opt.MaxAttempts {
		return false
	}
	elapsed := b.opt.Now().Sub(start)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down || elapsed >= b.opt.RetryFor {
		b.down = true
		return true
	}
	return false
}

// succeeded records that an operation succeeded: the store is up.
func (b *Backend) succeeded() {
	b.mu.Lock()
	b.down = false
	b.mu.Unlock()
}

// do runs one operation with the attempt loop shared by Save, Stat and
// Remove (and List, through its own attempt function).
func (b *Backend) do(ctx context.Context, op string, h backend.Handle, timeout bool, attempt func(actx context.Context, n int) error) error {
	start := b.opt.Now()
	for n := 1; ; n++ {
		actx, cancel := b.attemptCtx(ctx, timeout)
		err := attempt(actx, n)
		retry := err != nil && retryable(ctx, actx, err)
		cancel()
		if err == nil {
			b.succeeded()
			return nil
		}
		if !retry {
			return err
		}
		if b.giveUp(n, start) {
			return fmt.Errorf("%w (gave up after %d attempts in %s)", err, n, b.opt.Now().Sub(start).Round(time.Millisecond))
		}
		if werr := b.wait(ctx, op, h, n, err); werr != nil {
			return werr
		}
	}
}

// Save rewinds rd and saves it, retrying transient failures. See the
// package doc for ErrExists after an ambiguous failure.
func (b *Backend) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	return b.do(ctx, OpSave, h, true, func(actx context.Context, n int) error {
		if _, err := rd.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("save %v: rewind: %w", h, err)
		}
		err := b.be.Save(actx, h, rd)
		if n > 1 && errors.Is(err, backend.ErrExists) {
			// Invariant: the name was free when attempt 1 began, or that
			// attempt would have said so; an earlier attempt of ours most
			// likely stored it. Reported as the backend reports it.
			return fmt.Errorf("%w (on attempt %d, after an earlier attempt failed ambiguously)", err, n)
		}
		return err
	})
}

// Load fetches a range of h, retrying transient failures and re-fetching
// after an integrity failure. fn is called once per fetch.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	refetches := 0
	start := b.opt.Now()
	for n, retries := 1, 1; ; n++ {
		actx, cancel := b.attemptCtx(ctx, true)
		err := b.be.Load(actx, h, length, offset, fn)
		retry := err != nil && retryable(ctx, actx, err)
		cancel()
		switch {
		case err == nil:
			b.succeeded()
			return nil
		case retry:
			if b.giveUp(n-refetches, start) {
				return fmt.Errorf("%w (gave up after %d attempts in %s)", err, n-refetches, b.opt.Now().Sub(start).Round(time.Millisecond))
			}
		case errors.Is(err, backend.ErrIntegrity) && ctx.Err() == nil:
			if refetches >= b.opt.IntegrityRefetches {
				// Invariant: the error is returned unchanged, so the
				// object is reported damaged as the caller saw it.
				return err
			}
			refetches++
		default:
			return err
		}
		if werr := b.wait(ctx, OpLoad, h, retries, err); werr != nil {
			return werr
		}
		retries++
	}
}

// Stat retries transient failures.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	var fi backend.FileInfo
	err := b.do(ctx, OpStat, h, true, func(actx context.Context, _ int) error {
		var err error
		fi, err = b.be.Stat(actx, h)
		return err
	})
	return fi, err
}

// Remove retries transient failures; removing is idempotent.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	return b.do(ctx, OpRemove, h, true, func(actx context.Context, _ int) error {
		return b.be.Remove(actx, h)
	})
}

// fnError carries an error of the caller's fn through List's attempt loop,
// so that it is returned as is and never retried.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }

// List restarts a failed listing, skipping names fn has already seen in
// this call. An error of fn stops the listing and is returned unretried.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	seen := make(map[string]struct{})
	err := b.do(ctx, OpList, backend.Handle{Type: t}, false, func(lctx context.Context, _ int) error {
		// The attempt's deadline bounds the wait for the next name:
		// re-armed after each call of fn, stopped while fn runs.
		actx, cancel := context.WithCancelCause(lctx)
		defer cancel(nil)
		var timer *time.Timer
		arm := func() {
			if b.opt.Timeout > 0 {
				timer = time.AfterFunc(b.opt.Timeout, func() { cancel(context.DeadlineExceeded) })
			}
		}
		disarm := func() bool {
			return timer == nil || timer.Stop()
		}
		arm()
		err := b.be.List(actx, t, func(fi backend.FileInfo) error {
			if !disarm() {
				return context.Cause(actx)
			}
			defer arm()
			if _, ok := seen[fi.Name]; ok {
				return nil
			}
			seen[fi.Name] = struct{}{}
			if err := fn(fi); err != nil {
				return &fnError{err}
			}
			return nil
		})
		disarm()
		if err != nil && errors.Is(context.Cause(actx), context.DeadlineExceeded) && ctx.Err() == nil {
			// The wait for a name ran out: transient by Options.Timeout.
			// Not wrapped with %w: err holds the cancellation, never transient.
			return backend.Transient(fmt.Errorf("list %s: no answer within %v: %v", t, b.opt.Timeout, err))
		}
		return err
	})
	var fe *fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	return err
}

// Do runs fn, an operation outside the Backend interface (opening a store,
// reading its clock), with the attempts, backoff and per-attempt deadline
// of the wrapper's own operations: retried while it fails transiently or
// runs out of its attempt's deadline. op names it for OnRetry and the log.
func Do(ctx context.Context, opt Options, op string, fn func(ctx context.Context) error) error {
	opt.applyDefaults()
	b := &Backend{opt: opt, rnd: rand.New(opt.Rand)}
	return b.do(ctx, op, backend.Handle{}, true, func(actx context.Context, _ int) error { return fn(actx) })
}

// Op names of the optional features' retries.
const (
	OpServerTime = "server-time"
	OpCleanTemp  = "clean-temp"
)

// Wrap is New, returned with the optional features it retries too: when be
// has a server clock (backend.ServerClock, found with backend.As), reading
// it is retried like Stat, and when it has a TempCleaner, CleanTemp is
// retried (without a per-attempt deadline: it has no context). Without
// this, As finds the features of the backend underneath, unretried, and
// one 503 of the store fails the lock of a whole backup, or a prune that
// did all its work.
func Wrap(be backend.Backend, opt Options) backend.Backend {
	b := New(be, opt)
	sc, hasClock := backend.As[backend.ServerClock](be)
	tc, hasCleaner := backend.As[backend.TempCleaner](be)
	switch {
	case hasClock && hasCleaner:
		return &clockedCleaner{clocked: clocked{Backend: b, sc: sc}, tc: tc}
	case hasClock:
		return &clocked{Backend: b, sc: sc}
	case hasCleaner:
		return &cleaner{Backend: b, tc: tc}
	}
	return b
}

// clocked is a Backend whose wrapped backend has a server clock.
type clocked struct {
	*Backend
	sc backend.ServerClock
}

// cleaner is a Backend whose wrapped backend has a TempCleaner.
type cleaner struct {
	*Backend
	tc backend.TempCleaner
}

// clockedCleaner has both.
type clockedCleaner struct {
	clocked
	tc backend.TempCleaner
}

var (
	_ backend.ServerClock = (*clocked)(nil)
	_ backend.TempCleaner = (*cleaner)(nil)
	_ backend.ServerClock = (*clockedCleaner)(nil)
	_ backend.TempCleaner = (*clockedCleaner)(nil)
)

// Unwrap returns the retrying Backend, so that As finds it and, through it,
// the features of the backend underneath.
func (c *clocked) Unwrap() backend.Backend { return c.Backend }

// Unwrap returns the retrying Backend.
func (c *cleaner) Unwrap() backend.Backend { return c.Backend }

// ServerTime reads the store's clock, retrying transient failures.
func (c *clocked) ServerTime(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := c.do(ctx, OpServerTime, backend.Handle{}, true, func(actx context.Context, _ int) error {
		var err error
		t, err = c.sc.ServerTime(actx)
		return err
	})
	return t, err
}

// CleanTemp retries transient failures of the wrapped CleanTemp.
func (c *cleaner) CleanTemp() error { return cleanTemp(c.Backend, c.tc) }

// CleanTemp retries transient failures of the wrapped CleanTemp.
func (c *clockedCleaner) CleanTemp() error { return cleanTemp(c.Backend, c.tc) }

func cleanTemp(b *Backend, tc backend.TempCleaner) error {
	return b.do(context.Background(), OpCleanTemp, backend.Handle{}, false, func(context.Context, int) error {
		return tc.CleanTemp()
	})
}
