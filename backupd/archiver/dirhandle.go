package archiver

import (
	"sync"
	"sync/atomic"
)

// dirHandle is a directory the scan opened, shared by the scanner (which
// opens its subdirectories relative to it), its listing (until the walker
// has queued the directory's files) and each file job of the directory
// (the worker opens the file relative to it: docs/DESIGN.md §8 scenario
// 37). It is closed when the last of them releases it, or by
// sourceScan.Stop, whichever comes first.
//
// Descriptors held at once: the scanner's chain of open ancestors and the
// walker's chain of directories being walked (each at most the depth of the
// tree), the listings sent ahead (bounded through the look-ahead budget:
// every listing weighs dirWeight entries more), and the directories of the
// queued and running file jobs (at most twice the workers).
type dirHandle struct {
	fd   dirFD
	refs atomic.Int64
	set  *handleSet
}

// handleSet is every dirHandle of a scan still open.
type handleSet struct {
	mu   sync.Mutex
	open map[*dirHandle]struct{}
}

// add wraps fd in a handle with one reference, the caller's.
func (s *handleSet) add(fd dirFD) *dirHandle {
	h := &dirHandle{fd: fd, set: s}
	h.refs.Store(1)
	s.mu.Lock()
	if s.open == nil {
		s.open = map[*dirHandle]struct{}{}
	}
	s.open[h] = struct{}{}
	s.mu.Unlock()
	return h
}

// acquire adds a reference; nil does nothing.
func (h *dirHandle) acquire() *dirHandle {
	if h != nil {
		h.refs.Add(1)
	}
	return h
}

// release drops a reference and closes the directory with the last one;
// nil does nothing.
func (h *dirHandle) release() {
	if h != nil && h.refs.Add(-1) == 0 {
		h.set.close(h)
	}
}

// close closes h unless closeAll did already (a descriptor is closed once:
// its number may be reused at once).
func (s *handleSet) close(h *dirHandle) {
	s.mu.Lock()
	_, ok := s.open[h]
	delete(s.open, h)
	s.mu.Unlock()
	if ok {
		_ = h.fd.Close()
	}
}

// closeAll closes every handle still open: those of listings and jobs a
// failed or cancelled backup dropped. Nothing may use them afterwards.
func (s *handleSet) closeAll() {
	s.mu.Lock()
	open := s.open
	s.open = nil
	s.mu.Unlock()
	for h := range open {
		_ = h.fd.Close()
	}
}
