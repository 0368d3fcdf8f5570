// Package repotest has helpers shared by the engine's tests: repositories on
// the mem or local backend with cheap key derivation.
//
// Imports: backend, backend/local, backend/mem, crypto and repository; only
// tests import it. Like all of the engine it never imports Prometheus,
// collectors/ or exporter/ (docs/DESIGN.md §2.3).
package repotest

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/backend/mem"
	"github.com/meshbackup/backupd/backupd/crypto"
	"github.com/meshbackup/backupd/backupd/repository"
)

// Password is the password of test repositories.
var Password = []byte("test password")

// FastKDF keeps tests quick; never use it for real repositories.
var FastKDF = crypto.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

// Options returns repository options for tests, with small packs so that
// small trees still span several packs.
func Options() repository.Options {
	return repository.Options{KDF: FastKDF, PackSize: 256 << 10, Hostname: "testhost"}
}

// NewMem initializes a repository on a fresh mem backend.
func NewMem(t testing.TB) (*repository.Repo, *mem.Mem) {
	t.Helper()
	be := mem.New()
	r, err := repository.Init(t.Context(), be, Password, Options())
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	return r, be
}

// NewLocal initializes a repository in a temp directory and returns its path.
func NewLocal(t testing.TB) (*repository.Repo, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := local.Create(dir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := repository.Init(t.Context(), be, Password, Options())
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	return r, dir
}

// Reopen opens the repository on be again, as a new process would.
func Reopen(t testing.TB, be backend.Backend, opt repository.Options) *repository.Repo {
	t.Helper()
	if opt.KDF == (crypto.KDFParams{}) {
		opt.KDF = FastKDF
	}
	if opt.PackSize == 0 {
		opt.PackSize = 256 << 10
	}
	if opt.Hostname == "" {
		opt.Hostname = "testhost"
	}
	r, err := repository.Open(t.Context(), be, Password, opt)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return r
}

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set sets the clock, backwards too.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Add moves the clock.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
