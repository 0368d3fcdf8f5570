package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/bench/workload"
)

// --host names the snapshot's host instead of the machine's: the parent is
// found by it (so a pod with a new name stays incremental), and snapshots,
// forget and restore select by it and by --tag; --exclude leaves paths out.
func TestHostTagAndExcludeFlags(t *testing.T) {
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.02})
	if err := os.WriteFile(filepath.Join(src, "scratch.tmp"), []byte("left out"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.init()
	as := func(host string, tags ...string) func(*backupOptions) {
		return func(o *backupOptions) { o.Host, o.Tags, o.Exclude = host, tags, []string{"*.tmp"} }
	}
	first := c.backup(src, as("mesh-node-1", "nightly"))
	again := c.backup(src, as("mesh-node-1"))
	other := c.backup(src, as("mesh-node-2"))
	if first.FilesNew == 0 || again.FilesNew != 0 || again.BytesRead != 0 {
		t.Fatalf("the same --host is not incremental: first %+v, again %+v", first, again)
	}
	if other.FilesNew != first.FilesNew {
		t.Fatalf("another --host found a parent: %+v", other)
	}
	byHost := call(c, runSnapshots, snapshotsOptions{Filter: snapshotFilter{Host: "mesh-node-1"}}, false)
	if n := len(c.snapshots("")); n != 3 {
		t.Fatalf("%d snapshots, want 3", n)
	}
	g, out, _ := c.globals(true)
	if err := runSnapshots(t.Context(), snapshotsOptions{Filter: snapshotFilter{Tags: []string{"nightly"}}}, g, nil); err != nil {
		t.Fatal(err)
	}
	if tagged := out.String(); !strings.Contains(tagged, first.SnapshotID) || strings.Contains(tagged, again.SnapshotID) {
		t.Fatalf("snapshots --tag nightly:\n%s", tagged)
	}
	if !strings.Contains(byHost, first.SnapshotID[:8]) || strings.Contains(byHost, other.SnapshotID[:8]) {
		t.Fatalf("snapshots --host mesh-node-1:\n%s", byHost)
	}
	c.forget(forgetOptions{Filter: snapshotFilter{Host: "mesh-node-1"}, Keep: snapshot.KeepPolicy{Last: 1}})
	left := c.snapshots("")
	ids := map[string]bool{}
	for _, s := range left {
		ids[s.ID] = true
	}
	if len(left) != 2 || !ids[again.SnapshotID] || !ids[other.SnapshotID] {
		t.Fatalf("forget --host mesh-node-1 --keep-last 1 left %+v", left)
	}
	target := filepath.Join(t.TempDir(), "r")
	c.restore(restoreOptions{Filter: snapshotFilter{Host: "mesh-node-2"}, Target: target}, "latest")
	if _, err := os.Stat(filepath.Join(target, "scratch.tmp")); err == nil {
		t.Fatal("--exclude '*.tmp' stored scratch.tmp")
	}
	if _, errOut, code := c.run(nil, "backup", "--policy", "mesh", "--host", "bad host!", src); code != exitUsage {
		t.Fatalf("a bad --host: exit %d %s", code, errOut)
	}
}
