package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshbackup/backupd/backupd/results"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// A daemon that does not do the shared repository's work (a node agent
// without the leader lease) forgets nothing and runs no verify, but still
// scrubs its source; Retain, the leader's call, applies the retention.
func TestClusterWork(t *testing.T) {
	src := t.TempDir()
	d, cfg := testDaemon{source: src, keepLast: 1}.open(t)
	leader := false
	d.opt.ClusterWork = func() bool { return leader }
	p := cfg.Policies[0]
	h := d.handle(p.Repository)
	ctx := t.Context()
	snapshots := func() int {
		t.Helper()
		r, err := h.repo.Fresh()
		if err != nil {
			t.Fatal(err)
		}
		snaps, _, err := snapshot.LoadAll(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return len(snaps)
	}
	kinds := func() map[results.Kind]int {
		k := map[results.Kind]int{}
		for _, r := range h.store.Records() {
			k[r.Kind]++
		}
		return k
	}
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(src, "f"), fmt.Appendf(nil, "version %d", i), 0o600); err != nil {
			t.Fatal(err)
		}
		d.cycle(ctx, cfg, p)
	}
	if n := snapshots(); n != 3 {
		t.Errorf("follower: %d snapshots after 3 backups with keep_last 1, want 3 (retention is the leader's)", n)
	}
	if k := kinds(); k[results.Verify] != 0 || k[results.Scrub] == 0 {
		t.Errorf("follower: %d verify runs, %d scrubs; want none and some", k[results.Verify], k[results.Scrub])
	}
	leader = true
	if err := d.Retain(ctx, p); err != nil {
		t.Fatal(err)
	}
	if n := snapshots(); n != 1 {
		t.Errorf("after the leader's Retain: %d snapshots, want 1", n)
	}
	d.cycle(ctx, cfg, p)
	if k := kinds(); k[results.Verify] == 0 {
		t.Error("leader: no verify run")
	}
	if n := snapshots(); n != 1 {
		t.Errorf("leader's own backup: %d snapshots after retention, want 1", n)
	}
}
