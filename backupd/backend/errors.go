package backend

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
)

// ErrIntegrity is matched (errors.Is) by an error that says the bytes a Load
// delivered failed verification: a short read, a checksum or an
// authentication failure. A retrying wrapper fetches such an object again,
// a bounded number of times, and never hands on the bad bytes; when every
// fetch fails, the error stands and the object is reported damaged.
var ErrIntegrity = errors.New("backend: data failed verification")

// TransientError marks a failure that may go away when the operation is
// tried again: a 5xx or throttling answer of a store, a connection reset, a
// timeout of one attempt. Backends wrap such failures with Transient;
// wrappers decide whether to retry with IsTransient.
type TransientError struct {
	Err error
}

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// Transient wraps err as a TransientError; nil stays nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Err: err}
}

// IsTransient reports whether err is worth retrying: a TransientError, a
// network timeout, a reset or refused connection, or a connection closed
// mid-body. Context cancellation is never transient, nor are ErrNotFound,
// ErrExists and ErrIntegrity, whatever wraps them.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) || errors.Is(err, ErrIntegrity) {
		return false
	}
	var te *TransientError
	if errors.As(err, &te) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrClosedPipe)
}
