// Package retry: TEMPORARY placeholder (branch plumb) so that callers
// compile before the retry helper's package lands. Delete this file on
// merge; it retries nothing.
package retry

import (
	"log/slog"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
)

// Options is the retry helper's option set (placeholder).
type Options struct {
	MaxAttempts int
	Base, Max   time.Duration
	Timeout     time.Duration
	OnRetry     func(op string, attempt int, err error)
	Logger      *slog.Logger
}

// Backend is a placeholder that forwards to the wrapped backend.
type Backend struct{ backend.Backend }

// New returns be unchanged in a Backend (placeholder: no retries).
func New(be backend.Backend, _ Options) *Backend { return &Backend{Backend: be} }

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() backend.Backend { return b.Backend }
