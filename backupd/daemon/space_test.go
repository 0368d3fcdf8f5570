package daemon

import (
	"sync"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
)

// stateObserver keeps the last repository state.
type stateObserver struct {
	nopObserver
	mu   sync.Mutex
	last *RepoState
}

func (o *stateObserver) RepositoryState(s RepoState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last = &s
}

// opaque is a backend that offers no optional feature, as an object store
// offers no SpaceReporter.
type opaque struct{ backend.Backend }

// unwrapping is a wrapper that lets backend.As see through it (metering).
type unwrapping struct{ backend.Backend }

func (u unwrapping) Unwrap() backend.Backend { return u.Backend }

// Free space is reported for a backend that knows it (a directory, also
// through a wrapper), and not at all for one that does not; the size,
// from a listing, is reported for both.
func TestRepoStateFreeBytes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wrap     func(backend.Backend) backend.Backend
		wantFree bool
	}{
		{"directory", nil, true},
		{"directory behind a wrapper", func(be backend.Backend) backend.Backend { return unwrapping{be} }, true},
		{"no space reporter", func(be backend.Backend) backend.Backend { return opaque{be} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &stateObserver{}
			testDaemon{source: t.TempDir(), observer: obs, wrap: tc.wrap}.open(t)
			obs.mu.Lock()
			st := obs.last
			obs.mu.Unlock()
			if st == nil || !st.Up {
				t.Fatalf("state %+v, want the repository up", st)
			}
			if st.SizeBytes == 0 {
				t.Error("SizeBytes = 0: the listing was not summed")
			}
			if st.HasFreeBytes != tc.wantFree || tc.wantFree && st.FreeBytes == 0 || !tc.wantFree && st.FreeBytes != 0 {
				t.Errorf("HasFreeBytes %v FreeBytes %d, want reported: %v", st.HasFreeBytes, st.FreeBytes, tc.wantFree)
			}
		})
	}
}
