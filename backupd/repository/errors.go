package repository

import (
	"errors"
	"fmt"

	"github.com/meshbackup/backupd/backupd/backend"
)

// CorruptError reports data that failed authentication or its hash check.
type CorruptError struct {
	What string // "blob", "pack", "index", "snapshot"
	ID   ID
	Pack ID
	Err  error
}

func (e *CorruptError) Error() string {
	if !e.Pack.IsNull() {
		return fmt.Sprintf("%s %s in pack %s is corrupt: %v", e.What, e.ID.Str(), e.Pack.Str(), e.Err)
	}
	return fmt.Sprintf("%s %s is corrupt: %v", e.What, e.ID.Str(), e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// ErrCorrupt is matched (errors.Is) by every CorruptError.
var ErrCorrupt = errors.New("repository data is corrupt")

// Is makes errors.Is(err, ErrCorrupt) and errors.Is(err,
// backend.ErrIntegrity) true. The latter lets a retrying backend fetch
// again when a Load's fn found the bytes corrupt (the repository verifies
// inside the fn); a CorruptError returned after the Load (an index entry
// that lies) reaches no backend and is never retried.
func (e *CorruptError) Is(target error) bool {
	return target == ErrCorrupt || target == backend.ErrIntegrity
}
