package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/results"
)

// nopObserver takes the daemon's events and drops them.
type nopObserver struct{}

func (nopObserver) Configured(*config.Config)  {}
func (nopObserver) Restored([]results.Record)  {}
func (nopObserver) RunStarted(results.Record)  {}
func (nopObserver) RunProgress(results.Record) {}
func (nopObserver) RunFinished(results.Record) {}
func (nopObserver) Skipped(string, string)     {}
func (nopObserver) Missed(string, int)         {}
func (nopObserver) RepositoryState(RepoState)  {}

// testDaemon describes a daemon for a test: one policy "mesh" backing up
// source into the local repository repoDir (a new one if empty), as the
// machine hostname ("testhost" if empty); policyYAML is added to the
// policy (indented by four spaces, e.g. "    host: mesh-node\n").
type testDaemon struct {
	source, repoDir, hostname string
	keepLast                  int
	policyYAML                string
	// observer defaults to nopObserver; wrap, if set, wraps the backend.
	observer Observer
	wrap     func(backend.Backend) backend.Backend
	// isolate and progress are Options.Isolate and ProgressInterval.
	isolate  *Isolation
	progress time.Duration
}

// open opens the daemon; its schedules are never started.
func (td testDaemon) open(t *testing.T) (*Daemon, *config.Config) {
	t.Helper()
	if td.repoDir == "" {
		_, td.repoDir = repotest.NewLocal(t)
	}
	if td.hostname == "" {
		td.hostname = "testhost"
	}
	t.Setenv("BACKUPD_TEST_PASSWORD", string(repotest.Password))
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "backupd.yaml"), fmt.Appendf(nil, `repositories:
  - name: local
    path: %s
    password_env: BACKUPD_TEST_PASSWORD
policies:
  - name: mesh
    source: %s
    repository: local
    schedule: "@every 1h"
    rpo: 2h
    rto: 1h
    retention: {keep_last: %d}
    drill: {schedule: "@every 1h", scratch_dir: %s}
    verify: {schedule: "@every 1h", read_share: 1}
%s`, td.repoDir, td.source, td.keepLast, t.TempDir(), td.policyYAML))
	if err != nil {
		t.Fatal(err)
	}
	if td.observer == nil {
		td.observer = nopObserver{}
	}
	d, err := New(cfg, Options{Observer: td.observer, Hostname: td.hostname, RepoOptions: repotest.Options(),
		Isolate: td.isolate, ProgressInterval: td.progress,
		OpenBackend: func(_ context.Context, rc config.Repository) (backend.Backend, error) {
			be, err := local.Open(rc.Path, local.Options{})
			if err != nil || td.wrap == nil {
				return be, err
			}
			return td.wrap(be), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.open(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	return d, cfg
}
