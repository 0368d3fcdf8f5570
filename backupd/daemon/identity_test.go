package daemon

import (
	"path/filepath"
	"testing"

	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/results"
)

// leaveRunningRecord plays a daemon SIGKILLed mid-run: the run's start is
// recorded in the repository and its end never is.
func leaveRunningRecord(t *testing.T, d *Daemon, cfg *config.Config) results.Record {
	t.Helper()
	p := cfg.Policies[0]
	rec := results.Record{RunID: newRunID(), Kind: results.Backup, Policy: p.Name, Repository: p.Repository, Trigger: "scheduled",
		Hostname: cfg.HostFor(p, d.opt.Hostname), Start: d.opt.Now()}
	if err := d.handle(p.Repository).store.Started(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// A pod rescheduled under a new host name keeps its identity through the
// configured host: the next backup is incremental against the old pod's
// snapshot, retention applies across both, and the run the old pod was
// killed in is closed as interrupted by the new one.
func TestConfiguredHostSurvivesReschedule(t *testing.T) {
	src := filepath.Join(t.TempDir(), "vol")
	writeVolume(t, src, 20)
	a, cfg := testDaemon{source: src, keepLast: 1, hostname: "backupd-agent-7f9c", policyYAML: "    host: mesh-node-1\n"}.open(t)
	first := a.backupNow(t, cfg)
	if first.Outcome != results.Success || first.FilesNew != 20 || first.Hostname != "mesh-node-1" {
		t.Fatalf("first backup: %+v", first)
	}
	killed := leaveRunningRecord(t, a, cfg)

	repoDir := cfg.Repositories[0].Path
	b, cfgB := testDaemon{source: src, repoDir: repoDir, keepLast: 1, hostname: "backupd-agent-x2k4", policyYAML: "    host: mesh-node-1\n"}.open(t)
	h := b.handle("local")
	closed := h.store.Interrupted()
	if len(closed) != 1 || closed[0].RunID != killed.RunID || closed[0].Reason != results.ReasonInterrupted {
		t.Fatalf("the rescheduled daemon closed %+v, want the killed run %s as interrupted", closed, killed.RunID)
	}
	second := b.backupNow(t, cfgB)
	if second.Outcome != results.Success || second.FilesUnchanged != 20 || second.BytesRead != 0 {
		t.Fatalf("backup after the reschedule is not incremental: %+v", second)
	}
	snaps := b.snapshotsNow(t)
	if len(snaps) != 1 || snaps[0].ID.String() != second.Snapshot || snaps[0].Hostname != "mesh-node-1" {
		t.Fatalf("retention (keep_last 1) across the reschedule left %d snapshots", len(snaps))
	}
}
