package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/meshbackup/backupd/backupd/results"
	"github.com/meshbackup/backupd/backupd/tempdir"
)

// Scenario: a daemon killed mid-drill left its restored copy in the drill
// scratch directory (an emptyDir with a size limit, in the chart: left
// there, copies pile up until the pod is evicted). The next drill removes
// it, leaves alone the copy of a drill still running (another daemon's),
// and removes its own when it ends.
func TestDrillRemovesCopiesOfDeadDrills(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "raft.db"), []byte("pages"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, cfg, h := newTestDaemon(t, src)
	p := cfg.Policies[0]
	scratch := p.Drill.ScratchDir
	if scratch == "" {
		t.Fatal("the test daemon's policy has no drill scratch_dir")
	}
	if rec := d.runBackup(t.Context(), cfg, h, p, "test"); rec.Outcome != results.Success {
		t.Fatalf("backup: %+v", rec)
	}
	// A drill still running: held (acquired first, as its Acquire sweeps).
	live, err := tempdir.Acquire(scratch, "backupd-drill-")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Release()
	// The dead drill's copy: nobody holds it; a read-only directory in it,
	// as restored trees have.
	dead := filepath.Join(scratch, "backupd-drill-3141592")
	if err := os.MkdirAll(filepath.Join(dead, "ro"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, "ro", "raft.db"), []byte("pages"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, tempdir.Marker), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory of the user's with the same prefix, which is not ours.
	users := filepath.Join(scratch, "backupd-drill-keep")
	if err := os.Mkdir(users, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dead, "ro"), 0o555); err != nil {
		t.Fatal(err)
	}

	if rec := d.runDrill(t.Context(), cfg, h, p); rec.Outcome != results.Success || rec.FilesVerified != 1 {
		t.Fatalf("drill: %+v; want success, 1 file proved", rec)
	}
	ents, err := os.ReadDir(scratch)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{filepath.Base(live.Path()), filepath.Base(users)}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("after the drill the scratch directory holds %v, want only %v: the running drill's and the user's own (the dead one's copy and the drill's own removed)", names, want)
	}
}
