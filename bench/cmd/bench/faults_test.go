package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/bench/workload"
)

func TestClassifyCrash(t *testing.T) {
	exact := restoreCheck{Label: "snapshot 1", Ran: true}
	wrong := restoreCheck{Label: "snapshot 1", Ran: true, Diffs: []string{"a: size 1, want 2"}}
	gone := restoreCheck{Label: "snapshot 1", Failed: "no longer listed"}
	for _, tc := range []struct {
		name string
		e    crashEvidence
		want faults.Outcome
		note string
	}{
		{"finished before the kill", crashEvidence{restores: []restoreCheck{exact}}, faults.SurvivedExact, "finished before the kill"},
		{"killed, next backup fine", crashEvidence{killed: true, restores: []restoreCheck{exact, exact}}, faults.RecoveredAuto, "no human step"},
		{"stale lock needed unlock", crashEvidence{killed: true, humanSteps: []string{"restic unlock"}, restores: []restoreCheck{exact}}, faults.NeededHuman, "restic unlock"},
		{"check fails after recovery", crashEvidence{killed: true, checkFailed: "exit status 1: pack x unreferenced", restores: []restoreCheck{exact}}, faults.NeededHuman, "check failed"},
		{"next backup fails", crashEvidence{killed: true, recoveryFailed: "exit status 1: locked"}, faults.NeededHuman, "next backup failed"},
		{"earlier snapshot differs", crashEvidence{killed: true, restores: []restoreCheck{exact, wrong}}, faults.SilentWrongData, "differs in 1 entries"},
		{"earlier snapshot gone", crashEvidence{killed: true, humanSteps: []string{"x"}, restores: []restoreCheck{wrong, gone}}, faults.DataLost, "no longer listed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, note := classifyCrash(tc.e)
			if got != tc.want || !strings.Contains(note, tc.note) {
				t.Errorf("classifyCrash = %s (%s), want %s with %q", got, note, tc.want, tc.note)
			}
		})
	}
}

func TestClassifyRestoreCrashCorruptionBitRot(t *testing.T) {
	exact := restoreCheck{Label: "s", Ran: true}
	wrong := restoreCheck{Label: "s", Ran: true, Diffs: []string{"f: content hash 1…, want 2…"}}
	refused := restoreCheck{Label: "s", Failed: "exit status 3: data damaged"}
	for _, tc := range []struct {
		name string
		got  func() (faults.Outcome, string)
		want faults.Outcome
		note string
	}{
		{"restore: rerun converges, files half-written", func() (faults.Outcome, string) {
			return classifyRestoreCrash(restoreCrashEvidence{killed: true, halfWritten: []string{"a (3 of 9 bytes)"}, rerun: exact})
		}, faults.RecoveredAuto, "1 half-written files"},
		{"restore: finished first", func() (faults.Outcome, string) {
			return classifyRestoreCrash(restoreCrashEvidence{rerun: exact})
		}, faults.SurvivedExact, "finished before"},
		{"restore: rerun wrong", func() (faults.Outcome, string) {
			return classifyRestoreCrash(restoreCrashEvidence{killed: true, rerun: wrong})
		}, faults.SilentWrongData, "differs"},
		{"restore: rerun fails", func() (faults.Outcome, string) {
			return classifyRestoreCrash(restoreCrashEvidence{killed: true, rerun: refused})
		}, faults.DataLost, "did not restore"},
		{"corruption: detected and named, restore refused", func() (faults.Outcome, string) {
			return classifyCorruption(corruptionEvidence{detected: true, named: true, restores: []restoreCheck{refused, exact}})
		}, faults.DetectedReported, "naming the damaged file; 1 of 2 restores refused"},
		{"corruption: missed by check, refused by restore", func() (faults.Outcome, string) {
			return classifyCorruption(corruptionEvidence{restores: []restoreCheck{refused}})
		}, faults.DetectedReported, "did not report"},
		{"corruption: restore writes bad data with success", func() (faults.Outcome, string) {
			return classifyCorruption(corruptionEvidence{detected: true, restores: []restoreCheck{wrong}})
		}, faults.SilentWrongData, "restored with success but differs"},
		{"corruption: harmless and unreported", func() (faults.Outcome, string) {
			return classifyCorruption(corruptionEvidence{restores: []restoreCheck{exact}})
		}, faults.SurvivedExact, "not needed"},
		{"bit rot: noticed", func() (faults.Outcome, string) {
			return classifyBitRot(bitRotEvidence{noticed: true, older: exact, newer: exact, rotInNewer: 2})
		}, faults.DetectedReported, "reported"},
		{"bit rot: stored silently", func() (faults.Outcome, string) {
			return classifyBitRot(bitRotEvidence{older: exact, newer: exact, rotInNewer: 2})
		}, faults.SilentWrongData, "stored 2 rotted files"},
		{"bit rot: good version kept", func() (faults.Outcome, string) {
			return classifyBitRot(bitRotEvidence{older: exact, newer: exact, goodInNewer: 2})
		}, faults.SurvivedExact, "kept the good version"},
		{"bit rot: good version lost", func() (faults.Outcome, string) {
			return classifyBitRot(bitRotEvidence{noticed: true, older: refused, newer: exact})
		}, faults.DataLost, "did not restore"},
		{"healthy: restore differs", func() (faults.Outcome, string) {
			return classifyHealthy(healthyEvidence{restore: &wrong})
		}, faults.SilentWrongData, "differs"},
		{"healthy: backup failed", func() (faults.Outcome, string) {
			return classifyHealthy(healthyEvidence{failed: "init: exit status 1"})
		},
			faults.NeededHuman, "init"},
		{"healthy", func() (faults.Outcome, string) { return classifyHealthy(healthyEvidence{restore: &exact}) }, faults.SurvivedExact, "exact"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, note := tc.got()
			if got != tc.want || !strings.Contains(note, tc.note) {
				t.Errorf("got %s (%s), want %s with %q", got, note, tc.want, tc.note)
			}
		})
	}
}

// TestOracle checks the comparisons every restore goes through: a tree
// equal to its manifest, one with a half-written file under its final
// name and a temporary file beside it.
func TestOracle(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := workload.GenerateSmallFiles(src, workload.SmallFilesOptions{Files: 40, Dirs: 4, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	want, err := workload.Manifest(src)
	if err != nil {
		t.Fatal(err)
	}
	if d := compareTree(want, src); len(d) != 0 {
		t.Fatalf("a tree differs from its own manifest: %v", d)
	}
	if h, l := inspectPartial(want, src); len(h)+len(l) != 0 {
		t.Fatalf("complete tree: half-written %v, leftovers %v", h, l)
	}
	var victim string
	for p, e := range want {
		if e.Type == "file" && e.Size > 100 && (victim == "" || p < victim) {
			victim = p
		}
	}
	path := filepath.Join(src, filepath.FromSlash(victim))
	if err := os.Truncate(path, 10); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(path), ".restore-tmp-1")
	if err := os.WriteFile(tmp, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	half, left := inspectPartial(want, src)
	if len(half) != 1 || !strings.HasPrefix(half[0], victim+" (10 of ") || len(left) != 1 || !strings.HasSuffix(left[0], ".restore-tmp-1") {
		t.Errorf("half-written %v, leftovers %v; want %s and the temp file", half, left, victim)
	}
	d := compareTree(want, src)
	if len(d) != 3 { // size, hash, the unexpected file
		t.Errorf("differences %v", d)
	}
	if d := compareTree(want, filepath.Join(dir, "nowhere")); len(d) != 1 || !strings.Contains(d[0], "unreadable") {
		t.Errorf("missing tree: %v", d)
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{{"3f2a1b0c", "3f2a1b0c99", true}, {"3f2a1b0c99", "3f2a1b0c", true}, {"3f2a", "3f2b", false}, {"", "x", false}} {
		if got := sameSnapshot(tc.a, tc.b); got != tc.want {
			t.Errorf("sameSnapshot(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
	for _, tc := range []struct {
		out, rel string
		want     bool
	}{
		{"pack 634fb89e: not found", "data/63/634fb89e124cf9748db2f7c3", true},
		{"Data integrity error: segment 12, offset 3", "data/0/12", true},
		{"invalid checksum at pcee3aebb097b714c59749f5505149b56-s1c1 offset 3", "p/cee/3aebb097b714c59749f5505149b56-s1c1.f", true},
		{"repository damaged", "data/63/634fb89e124cf9748db2f7c3", false},
	} {
		if got := namesFile(tc.out, tc.rel); got != tc.want {
			t.Errorf("namesFile(%q, %q) = %v", tc.out, tc.rel, got)
		}
	}
}

func TestKillMomentsAndCellRand(t *testing.T) {
	a := killMoments(cellRand(1, "crash-backup", "restic", "mesh"), 5, 10*time.Second)
	b := killMoments(cellRand(1, "crash-backup", "restic", "mesh"), 5, 10*time.Second)
	c := killMoments(cellRand(1, "crash-backup", "kopia", "mesh"), 5, 10*time.Second)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("the same seed drew %v and %v", a, b)
		}
		if a[i] < 500*time.Millisecond || a[i] > 9500*time.Millisecond || (i > 0 && a[i] < a[i-1]) {
			t.Fatalf("moments %v: want sorted, within 5%%–95%% of 10s", a)
		}
	}
	if a[0] == c[0] && a[1] == c[1] {
		t.Errorf("two tools drew the same moments %v", a)
	}
}

// buildBackupd builds bin/backupd into a temporary directory.
func buildBackupd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "backupd")
	cmd := exec.Command("go", "build", "-o", bin, "./backupd")
	cmd.Dir = moduleRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./backupd: %v\n%s", err, out)
	}
	return bin
}

// TestFaultsFramework runs the framework on a tiny mesh workload with backupd
// and restic, real processes and SIGKILLs: healthy, crash-backup and
// repo-corruption, and checks that every cell is classified, that nothing
// lost or silently changed data, and that backupd's full check reports
// and names damaged packs.
func TestFaultsFramework(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the tools")
	}
	tools := []string{"backupd"}
	if findTool("restic", "") != "" {
		tools = append(tools, "restic")
	} else {
		t.Log("restic is not installed: backupd only")
	}
	dir := t.TempDir()
	prof := profile{name: "test",
		mesh:        workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.01, Seed: 1},
		small:       workload.SmallFilesOptions{Files: 300, Dirs: 10, Seed: 1},
		backupKills: 1, restoreKills: 1, bitRotFiles: 2, corruptTrials: 1, runLimit: 20 * time.Second, hangGrace: 5 * time.Second, failGrace: 2 * time.Second, s3Down: 2 * time.Second, impactWindow: time.Second,
		// restic retries a truncated pack for about 45 s: left out here.
		damages: []string{"bit flip in a data pack", "bit flip in an index file", "bit flip in a snapshot file"}}
	cfg := &config{work: filepath.Join(dir, "work"), out: filepath.Join(dir, "out"), backupd: buildBackupd(t),
		tools: tools, seed: 1,
		faults: faultsConfig{custom: &prof, workloads: []string{"mesh"}, scenarios: []string{faults.ScenarioHealthy, faults.ScenarioCrashBackup, faults.ScenarioRepoCorruption, faults.ScenarioImpact}}}
	var stderr bytes.Buffer
	res, err := runFaults(t.Context(), cfg, newProgress(&stderr))
	if err != nil {
		t.Fatal(err)
	}
	// One JSON line per cell on a pipe.
	var lines int
	for sc := bufio.NewScanner(&stderr); sc.Scan(); lines++ {
		var l cellLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Total != len(res.Cells) {
			t.Errorf("progress line %q: %v", sc.Text(), err)
		}
	}
	// Three scenarios a cell each per tool, and impact's: budget and
	// no-budget for backupd, one for the others.
	if want := 4*len(tools) + 1; len(res.Cells) != want || lines != want {
		t.Fatalf("%d cells, %d progress lines, want %d", len(res.Cells), lines, want)
	}
	back, err := faults.Read(filepath.Join(cfg.out, "faults.json"))
	if err != nil || len(back.Cells) != len(res.Cells) || len(back.Tools) != len(tools) || len(back.Workloads) != 1 {
		t.Fatalf("faults.json: %v, %+v", err, back)
	}
	for _, c := range res.Cells {
		where := c.Tool + "/" + c.Scenario + "/" + c.Workload
		if c.Outcome == faults.NotApplicable || c.Outcome == faults.DataLost || c.Outcome == faults.SilentWrongData {
			t.Errorf("%s: %s: %s %s", where, c.Outcome, c.Verdict, c.Reason)
		}
		switch c.Scenario {
		case faults.ScenarioHealthy:
			if c.Outcome != faults.SurvivedExact || c.Usage[faults.UsageFirstBackup].WallSeconds <= 0 ||
				c.Usage[faults.UsageRestore].CPUSeconds <= 0 || c.Usage[faults.UsageFirstBackup].ReadBytes <= 0 ||
				c.Usage[faults.UsageFirstBackup].PeakRSSBytes <= 0 {
				t.Errorf("%s: %s, usage %+v", where, c.Outcome, c.Usage)
			}
		case faults.ScenarioCrashBackup:
			if len(c.Trials) != 2 || c.Orphans == nil {
				t.Errorf("%s: %d trials, orphans %v", where, len(c.Trials), c.Orphans)
			}
		case faults.ScenarioImpact:
			if c.Outcome != faults.SurvivedExact || c.Latency == nil || c.Latency.Samples == 0 || (c.Tool == "backupd") != (c.Variant != "") {
				t.Errorf("%s/%s: %s, latency %+v", where, c.Variant, c.Outcome, c.Latency)
			}
		case faults.ScenarioRepoCorruption:
			d := c.Detection
			if d == nil || d.Injected != 3 || d.RestoreSilent != 0 {
				t.Errorf("%s: detection %+v", where, d)
				continue
			}
			if c.Tool != "backupd" {
				continue
			}
			if d.Detected != d.Injected || d.IncrementalCheckSeconds == nil {
				t.Errorf("%s: backupd's full check reported %d of %d injections", where, d.Detected, d.Injected)
			}
			for _, tr := range c.Trials {
				if strings.Contains(tr.Point, "data pack") && (tr.Outcome != faults.DetectedReported || !strings.Contains(tr.Note, "naming the damaged file")) {
					t.Errorf("%s: %s: %s %s", where, tr.Point, tr.Outcome, tr.Note)
				}
			}
		}
	}
}

// isMountPoint reports whether dir is mounted on, and with what type.
func isMountPoint(t *testing.T, dir string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[1] == dir {
			return f[2], true
		}
	}
	return "", false
}

// The verification restores go to a tmpfs as root, sized for the set, and
// to the disk when the bench is not root or the machine lacks the memory;
// the report is told which.
func TestCheckRestoreDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "checks")
	where, err := checkRestoreDir(t.Context(), dir, 10<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer unmount(dir)
	typ, mounted := isMountPoint(t, dir)
	if os.Geteuid() != 0 {
		if mounted || !strings.Contains(where, "needs root") {
			t.Fatalf("not root: mounted %v, where %q; want the disk, saying a tmpfs needs root", mounted, where)
		}
		return
	}
	if !mounted || typ != "tmpfs" || !strings.Contains(where, "84.0 MiB tmpfs") {
		t.Fatalf("as root: %s mounted %v (%s), where %q; want a tmpfs of twice 10 MiB and 64 MiB", dir, mounted, typ, where)
	}
	unmount(dir)
	if _, mounted := isMountPoint(t, dir); mounted {
		t.Fatal("still mounted after unmount")
	}
	huge := filepath.Join(t.TempDir(), "huge")
	where, err = checkRestoreDir(t.Context(), huge, 1<<50)
	if err != nil {
		t.Fatal(err)
	}
	if _, mounted := isMountPoint(t, huge); mounted || !strings.HasPrefix(where, "the disk") {
		unmount(huge)
		t.Fatalf("a set larger than memory: mounted %v, where %q; want the disk", mounted, where)
	}
}
