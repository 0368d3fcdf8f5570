package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/bench/workload"
)

// callErr runs fn in-process and returns what it printed and its error.
func callErr[O any](c *cli, fn func(context.Context, O, *globalOptions, []string) error, opts O, jsonOut bool, args ...string) (string, error) {
	c.t.Helper()
	g, out, _ := c.globals(jsonOut)
	err := fn(c.t.Context(), opts, g, args)
	return out.String(), err
}

// packsBySize lists the repository's packs, biggest first.
func packsBySize(t *testing.T, repo string) []string {
	t.Helper()
	packs, err := filepath.Glob(filepath.Join(repo, "data", "*", "*"))
	if err != nil || len(packs) == 0 {
		t.Fatalf("no packs: %v", err)
	}
	size := func(p string) int64 { fi, _ := os.Stat(p); return fi.Size() }
	sort.Slice(packs, func(i, j int) bool { return size(packs[i]) > size(packs[j]) })
	return packs
}

func flipByte(t *testing.T, p string, at func(n int) int) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[at(len(b))] ^= 0x40
	_ = os.Chmod(p, 0o600)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func objects(t *testing.T, repo, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(repo, dir))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// Issue 15 finding 1: a damaged pack's blobs stayed in the index, so every
// later backup deduplicated against them and stored nothing.
func TestRepairDamagedPackIsStoredAgain(t *testing.T) {
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 3, ConsulServers: 1, Scale: 0.05, Seed: 3})
	want := manifest(t, src)
	c.init()
	c.backup(src)
	// Damage the biggest data blob.
	pack, blob := biggestBlob(c)
	flipByte(t, filepath.Join(c.repo, "data", pack.String()[:2], pack.String()), func(int) int { return int(blob.Offset + blob.Length/2) })

	out, err := callErr(c, runCheck, checkOptions{ReadData: true}, false)
	if exitCode(err) != exitCorrupt || !strings.Contains(out, "corrupt-blob") {
		t.Fatalf("check --read-data: exit %d: %v\n%s", exitCode(err), err, out)
	}
	if len(objects(t, c.repo, "damaged")) != 1 || !strings.Contains(out, "recorded the damage") {
		t.Fatalf("check did not record the damage: %v\n%s", objects(t, c.repo, "damaged"), out)
	}
	// A plain check, without read-back, still reports the recorded damage.
	if out, err := callErr(c, runCheck, checkOptions{}, false); exitCode(err) != exitCorrupt || !strings.Contains(out, "damaged-blob") {
		t.Fatalf("plain check after recording: exit %d\n%s", exitCode(err), out)
	}

	s2 := c.backup(src)
	if s2.BytesWritten < int64(blob.Length) {
		t.Fatalf("backup after damage was recorded stored %d bytes: it deduplicated against the damaged blobs", s2.BytesWritten)
	}
	c.assertRestoreEquals(s2.SnapshotID, want)

	out, err = callErr(c, runRepairIndex, repairIndexOptions{}, false)
	if err != nil || !strings.Contains(out, "dropped blob") {
		t.Fatalf("repair index: %v\n%s", err, out)
	}
	if out, err := callErr(c, runCheck, checkOptions{ReadData: true}, false); err != nil {
		t.Fatalf("check --read-data after backup and repair index: %v\n%s", err, out)
	}
	c.assertRestoreEquals(s2.SnapshotID, want)
	// The first snapshot is healed too: its lost blobs were stored again.
	snaps := c.snapshots("mesh")
	c.assertRestoreEquals(snaps[0].ID, want)
}

// The BackupdRepositoryCorruption runbook (alerts/runbooks.md), step by step, as
// an operator runs it: a pack is lost, and the source changed meanwhile, so
// some lost data is gone for good.
func TestRepairRunbookEndToEnd(t *testing.T) {
	c := newCLI(t)
	opt := workload.Options{Proxies: 3, ConsulServers: 1, Scale: 0.03, Seed: 11}
	src := genVolume(t, opt)
	c.init()
	c.backup(src)
	if err := workload.Mutate(src, opt, 1); err != nil {
		t.Fatal(err)
	}
	c.backup(src)
	for _, p := range packsBySize(t, c.repo)[:2] {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	want := manifest(t, src)

	steps := []struct {
		args []string
		code int
	}{
		{[]string{"check", "--read-data"}, exitCorrupt},
		{[]string{"repair", "index"}, exitOK},
		{[]string{"backup", "--policy", "mesh", src}, exitOK},
		{[]string{"repair", "snapshots"}, exitOK},
		{[]string{"check", "--read-data"}, exitOK},
	}
	for _, s := range steps {
		out, errOut, code := c.run(nil, s.args...)
		if code != s.code {
			t.Fatalf("backupd %s: exit %d, want %d\n%s\n%s", strings.Join(s.args, " "), code, s.code, out, errOut)
		}
		if s.args[0] == "repair" && s.args[1] == "snapshots" && !strings.Contains(out, "rewrote snapshot") {
			t.Fatalf("repair snapshots rewrote nothing:\n%s", out)
		}
	}
	c.assertRestoreEquals("latest", want)
	for _, s := range c.snapshots("mesh") {
		target := filepath.Join(t.TempDir(), "r")
		c.restore(restoreOptions{Target: target}, s.ID)
	}
}

// repairSnapshotsJSON is repair snapshots' --json output, as far as tests read it.
type repairSnapshotsJSON struct {
	Rewritten []struct {
		Original    string `json:"original"`
		Replacement string `json:"replacement"`
		Seq         uint64 `json:"seq"`
		Files       []struct {
			Path   string `json:"path"`
			Action string `json:"action"`
		} `json:"files"`
	} `json:"rewritten"`
}

func TestRepairSnapshotsModes(t *testing.T) {
	for _, remove := range []bool{false, true} {
		t.Run(map[bool]string{false: "truncate", true: "remove"}[remove], func(t *testing.T) {
			c := newCLI(t)
			src := genVolume(t, workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.03, Seed: 7})
			c.init()
			s1 := c.backup(src)
			before := c.snapshots("mesh")
			_ = os.Remove(packsBySize(t, c.repo)[0])
			out, err := callErr(c, runRepairSnapshots, repairSnapshotsOptions{RemoveDamaged: remove}, true)
			if err != nil {
				t.Fatal(err)
			}
			var res repairSnapshotsJSON
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatal(err, out)
			}
			if len(res.Rewritten) != 1 || res.Rewritten[0].Original != s1.SnapshotID || len(res.Rewritten[0].Files) == 0 {
				t.Fatalf("report: %s", out)
			}
			action := "truncated"
			if remove {
				action = "removed"
			}
			for _, f := range res.Rewritten[0].Files {
				if f.Action != action {
					t.Fatalf("file %s: action %s, want %s", f.Path, f.Action, action)
				}
			}
			after := c.snapshots("mesh")
			if len(after) != 1 || after[0].ID != res.Rewritten[0].Replacement || after[0].Seq != before[0].Seq || !after[0].Time.Equal(before[0].Time) {
				t.Fatalf("snapshots before %+v, after %+v", before, after)
			}
			// The index still lists the lost pack until repair index.
			if out, err := callErr(c, runCheck, checkOptions{}, false); exitCode(err) != exitCorrupt || !strings.Contains(out, "missing-pack") || strings.Contains(out, "affected:") {
				t.Fatalf("check after repair snapshots: %v\n%s", err, out)
			}
			call(c, runRepairIndex, repairIndexOptions{}, false)
			if out, err := callErr(c, runCheck, checkOptions{}, false); err != nil {
				t.Fatalf("check after repair snapshots and repair index: %v\n%s", err, out)
			}
			c.restore(restoreOptions{Target: filepath.Join(t.TempDir(), "r")}, "latest")
		})
	}
}

// Issue 15 finding 7: one bad index file stopped every command, and check
// called the packs it listed leftovers of an interrupted backup; a deleted
// index file was not healed by the next backup.
func TestRepairIndexBadOrDeletedIndexFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, p string)
	}{
		{"bit flip", func(t *testing.T, p string) { flipByte(t, p, func(n int) int { return n / 2 }) }},
		{"truncated", func(t *testing.T, p string) { _ = os.Truncate(p, 20) }},
		{"deleted", func(t *testing.T, p string) { _ = os.Remove(p) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t)
			opt := workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.03, Seed: 5}
			src := genVolume(t, opt)
			c.init()
			s1 := c.backup(src)
			want1 := manifest(t, src)
			idx := objects(t, c.repo, "index")
			if err := workload.Mutate(src, opt, 1); err != nil {
				t.Fatal(err)
			}
			s2 := c.backup(src)
			want2 := manifest(t, src)
			tc.damage(t, filepath.Join(c.repo, "index", idx[0]))

			out, err := callErr(c, runCheck, checkOptions{}, false)
			if exitCode(err) != exitCorrupt || !strings.Contains(out, "repair index") || tc.name != "deleted" && strings.Contains(out, "interrupted backup") ||
				tc.name == "deleted" && !strings.Contains(out, "index file was lost") {
				t.Fatalf("check: exit %d\n%s", exitCode(err), out)
			}
			if tc.name != "deleted" {
				if !strings.Contains(out, "bad-index") || !strings.Contains(out, idx[0][:8]) {
					t.Fatalf("check does not name the bad index file %s:\n%s", idx[0], out)
				}
				g, _, _ := c.globals(true)
				err := runRestore(t.Context(), restoreOptions{Target: filepath.Join(t.TempDir(), "r")}, g, []string{"latest"})
				if exitCode(err) != exitCorrupt || !strings.Contains(err.Error(), "index/"+idx[0]) || !strings.Contains(err.Error(), "backupd repair index") {
					t.Fatalf("restore: exit %d: %v", exitCode(err), err)
				}
			}
			out = call(c, runRepairIndex, repairIndexOptions{}, true)
			var res struct {
				NewlyIndexed int      `json:"newly_indexed_packs"`
				Removed      []string `json:"index_removed"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil || res.NewlyIndexed == 0 {
				t.Fatalf("repair index: %v\n%s", err, out)
			}
			if out, err := callErr(c, runCheck, checkOptions{ReadData: true}, false); err != nil {
				t.Fatalf("check after repair index: %v\n%s", err, out)
			}
			c.assertRestoreEquals(s1.SnapshotID, want1)
			c.assertRestoreEquals(s2.SnapshotID, want2)
			s3 := c.backup(src)
			c.assertRestoreEquals(s3.SnapshotID, want2)
		})
	}
}

// A kill during repair index leaves a usable repository: after the new
// index is written and before the old ones are removed, readers skip the
// superseded (even unreadable) old files.
func TestRepairIndexInterruptedBeforeRemoval(t *testing.T) {
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.02, Seed: 9})
	want := manifest(t, src)
	c.init()
	s1 := c.backup(src)
	old := objects(t, c.repo, "index")
	flipByte(t, filepath.Join(c.repo, "index", old[0]), func(n int) int { return n / 2 })
	keep := filepath.Join(t.TempDir(), "old")
	b, _ := os.ReadFile(filepath.Join(c.repo, "index", old[0]))
	_ = os.WriteFile(keep, b, 0o600)
	call(c, runRepairIndex, repairIndexOptions{}, false)
	// Put the removed, unreadable file back: as if killed before removing it.
	if err := os.WriteFile(filepath.Join(c.repo, "index", old[0]), b, 0o600); err != nil {
		t.Fatal(err)
	}
	c.assertRestoreEquals(s1.SnapshotID, want)
	if out, err := callErr(c, runCheck, checkOptions{}, false); err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	call(c, runRepairIndex, repairIndexOptions{}, false)
	if got := objects(t, c.repo, "index"); len(got) != 1 {
		t.Fatalf("index files after a rerun: %v", got)
	}
}

// Issue 15 finding 13, through restore: a crafted index entry is a
// corruption error (exit 3) naming the index file, not a 4 GB allocation.
func TestCraftedIndexEntryRestoreIsCorrupt(t *testing.T) {
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 1, ConsulServers: 1, Scale: 0.02, Seed: 2})
	c.init()
	c.backup(src)
	r := c.openRepo(true)
	var pack repository.ID
	var blob repository.PackBlob
	for p, blobs := range r.Index().Packs() {
		pack, blob = p, blobs[0]
		break
	}
	blob.Length, blob.Offset = 0xFFFFFFF0, 0
	if _, err := r.SaveIndexFile(t.Context(), &repository.IndexFile{Packs: []repository.IndexPack{{ID: pack, Blobs: []repository.PackBlob{blob}}}}); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	g, _, _ := c.globals(false)
	err := runRestore(t.Context(), restoreOptions{Target: filepath.Join(t.TempDir(), "r")}, g, []string{"latest"})
	runtime.ReadMemStats(&after)
	if exitCode(err) != exitCorrupt || !strings.Contains(err.Error(), "index/") || !strings.Contains(err.Error(), "repair index") {
		t.Fatalf("restore: exit %d: %v", exitCode(err), err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 256<<20 {
		t.Fatalf("restore allocated %d bytes", n)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("restore took %s", d)
	}
}

func TestUnlockCommand(t *testing.T) {
	c := newCLI(t)
	c.init()
	write := func(name string, li map[string]any) {
		b, _ := json.Marshal(li)
		if err := os.WriteFile(filepath.Join(c.repo, "locks", name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("future0123", map[string]any{"exclusive": true, "hostname": "otherhost", "pid": 7, "command": "prune", "owner": "a",
		"time": time.Now().Add(30 * 24 * time.Hour)})
	write("live0123", map[string]any{"exclusive": false, "hostname": "otherhost", "pid": 8, "command": "backup", "owner": "b",
		"time": time.Now()})
	// The future-dated exclusive lock no longer blocks a backup.
	src := genVolume(t, workload.Options{Proxies: 1, ConsulServers: 1, Scale: 0.01, Seed: 1})
	c.backup(src)

	write("future4567", map[string]any{"exclusive": true, "hostname": "otherhost", "pid": 9, "command": "prune", "owner": "c",
		"time": time.Now().Add(30 * 24 * time.Hour)})
	out, _, code := c.run(nil, "unlock", "--json")
	var removed []struct {
		Name  string `json:"name"`
		Stale bool   `json:"stale"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &removed) != nil || len(removed) != 1 || removed[0].Name != "future4567" || !removed[0].Stale {
		t.Fatalf("unlock: exit %d\n%s", code, out)
	}
	out, _, code = c.run(nil, "unlock", "--force")
	if code != 0 || !strings.Contains(out, "removed live lock locks/live0123") || len(objects(t, c.repo, "locks")) != 0 {
		t.Fatalf("unlock --force: exit %d\n%s", code, out)
	}
	if _, _, code := c.run(nil, "unlock", "extra"); code != exitUsage {
		t.Fatalf("unlock with an argument: exit %d", code)
	}
}

// biggestBlob returns the biggest data blob of the repository and its pack.
func biggestBlob(c *cli) (repository.ID, repository.PackBlob) {
	c.t.Helper()
	r := c.openRepo(true)
	var pack repository.ID
	var best repository.PackBlob
	for p, blobs := range r.Index().Packs() {
		for _, b := range blobs {
			if b.Type == repository.DataBlob && b.Length > best.Length {
				pack, best = p, b
			}
		}
	}
	return pack, best
}
