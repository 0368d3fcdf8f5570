package backend

import (
	"context"
	"time"
)

// TempDirer is implemented by a backend that offers a scratch directory on
// its own storage: files written there become objects without a copy across
// devices (the local backend hard-links them). The repository builds its
// packs there when one is found.
type TempDirer interface {
	TempDir() string
}

// TempCleaner is implemented by a backend whose scratch space can hold
// leftovers of writers that died. CleanTemp removes them; call it only when
// no writer is running, e.g. under an exclusive repository lock.
type TempCleaner interface {
	CleanTemp() error
}

// Unwrapper is implemented by a backend that wraps another one (to meter,
// retry or inject faults). Unwrap returns the wrapped backend, so that As
// finds the optional features of the backend underneath.
type Unwrapper interface {
	Unwrap() Backend
}

// As finds an optional feature T of be: it returns be itself when be
// implements T, else the first backend down be's chain of Unwrap calls that
// does. The second result is false when no backend of the chain implements
// T.
func As[T any](be Backend) (T, bool) {
	for be != nil {
		if f, ok := be.(T); ok {
			return f, true
		}
		u, ok := be.(Unwrapper)
		if !ok {
			break
		}
		be = u.Unwrap()
	}
	var zero T
	return zero, false
}

// ServerClock is implemented by a backend shared by several hosts whose
// store keeps a clock of its own (an object store's Date header). Locks
// written to such a backend are dated by that clock, so the hosts' own
// clocks may disagree by more than a lock lease without a live lock looking
// stale (docs/DESIGN.md, locks).
type ServerClock interface {
	// ServerTime returns the store's current time, as close as one request
	// can tell it. It may answer without a request of its own, from a
	// recent answer of the store to another request (its time plus the
	// time elapsed since, on the host's monotonic clock), which tells it as
	// closely.
	ServerTime(ctx context.Context) (time.Time, error)
}

// SpaceReporter is implemented by a backend that can tell how much space is
// left where it stores objects (a filesystem). An object store has no such
// figure: it does not implement SpaceReporter, and no free space is
// reported rather than an invented one.
type SpaceReporter interface {
	FreeBytes() (uint64, error)
}
