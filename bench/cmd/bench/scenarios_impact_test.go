package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/bench/workload"
)

func TestClassifyProxyCrash(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    proxyCrashEvidence
		want faults.Outcome
	}{
		{"clean", proxyCrashEvidence{}, faults.SurvivedExact},
		{"lost lines", proxyCrashEvidence{lostLines: 3, lostFrom: []string{"3 of 9 lines of p"}}, faults.SilentWrongData},
		{"lost lines, warned", proxyCrashEvidence{lostLines: 3, warned: true}, faults.DetectedReported},
		{"torn file", proxyCrashEvidence{inconsistent: []string{"p/bootstrap.json: 7 bytes equal to none of its states"}}, faults.SilentWrongData},
		{"failed, next ok", proxyCrashEvidence{failed: "exit status 1"}, faults.RecoveredAuto},
		{"failed twice", proxyCrashEvidence{failed: "exit status 1", recoveryFailed: "exit status 1"}, faults.NeededHuman},
		{"restore failed", proxyCrashEvidence{restoreFailed: "exit status 1"}, faults.DataLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, note := classifyProxyCrash(tc.e); got != tc.want {
				t.Errorf("%s (%s), want %s", got, note, tc.want)
			}
		})
	}
}

func TestClassifyOutage(t *testing.T) {
	exact := restoreCheck{Label: "s", Ran: true}
	for _, tc := range []struct {
		name string
		e    outageEvidence
		want faults.Outcome
	}{
		{"rode it out", outageEvidence{succeeded: true, restores: []restoreCheck{exact}}, faults.SurvivedExact},
		{"clean failure", outageEvidence{failed: "ENOSPC", restores: []restoreCheck{exact}}, faults.RecoveredAuto},
		{"hang", outageEvidence{hung: true, restores: []restoreCheck{exact}}, faults.NeededHuman},
		{"unlock", outageEvidence{failed: "x", humanSteps: []string{"unlock"}, restores: []restoreCheck{exact}}, faults.NeededHuman},
		{"next failed", outageEvidence{failed: "x", nextFailed: "y"}, faults.NeededHuman},
		{"snapshot lost", outageEvidence{failed: "x", restores: []restoreCheck{{Label: "s", Failed: "gone"}}}, faults.DataLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, note := classifyOutage(tc.e); got != tc.want {
				t.Errorf("%s (%s), want %s", got, note, tc.want)
			}
		})
	}
}

// TestFileStates: a log's state is any prefix of what it held; a file
// rewritten in place its old content or a prefix of the new one; a mix
// of old and new is none.
func TestFileStates(t *testing.T) {
	st := &fileStates{hashes: map[string]bool{hashOf([]byte("old content")): true}, prefixes: [][]byte{[]byte("new content")}}
	for in, want := range map[string]bool{"old content": true, "new content": true, "new co": true, "": true, "old cntent": false, "new content!": false, "old content new": false} {
		if got := st.holds([]byte(in)); got != want {
			t.Errorf("holds(%q) = %v, want %v", in, got, want)
		}
	}
	if got := lineSeqs([]byte("[t] seq=4 a\n[t] seq=5 b\nnoise\n[t] seq=6 partial")); len(got) != 3 || got[0] != 4 || got[2] != 6 {
		t.Errorf("lineSeqs = %v", got)
	}
}

// testBed is a bed of tool on a small mesh set, its healthy phase done.
func testBed(t *testing.T, tool string) *bed {
	t.Helper()
	var bin string
	if tool == "backupd" {
		bin = buildBackupd(t)
	} else {
		var err error
		if bin, err = exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	work := t.TempDir()
	prof := profiles()["quick"]
	prof.mesh = workload.Options{Proxies: 8, ConsulServers: 1, Scale: 0.02}
	cfg := &config{seed: 1, work: work, out: filepath.Join(work, "out")}
	fr := &faultRun{cfg: cfg, prof: prof, progress: newProgress(io.Discard), res: &faults.Results{},
		bins: map[string]string{tool: bin}, order: []string{tool}, runDir: filepath.Join(work, "run")}
	pw, err := prepareWorkload(t.Context(), faultWorkloads(prof)["mesh"], filepath.Join(work, "sets"), fr.progress)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBed(t.Context(), fr, pw, tool, filepath.Join(fr.runDir, "mesh", tool))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.prepareBaseline(t.Context()); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestScenariosWithRestic runs the impact, proxy-crash-rotation and
// outage scenarios on restic and a small mesh set and checks their
// classification: restic's backup beside the writer restores exact and
// the writer's latencies are filled in; its snapshots of a live mesh hold
// consistent files and every log line; it fails cleanly when its
// repository fills up and its next backup succeeds (as root: tmpfs).
func TestScenariosWithRestic(t *testing.T) {
	if testing.Short() {
		t.Skip("runs restic")
	}
	b := testBed(t, "restic")
	ctx := context.Background()
	c, err := impactScenario{}.run(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if c.Outcome != faults.SurvivedExact || c.Latency == nil || c.Latency.Samples == 0 || b.fr.res.Baselines["impact/mesh"].Samples == 0 {
		t.Errorf("impact: %s, %+v, baseline %+v: %s", c.Outcome, c.Latency, b.fr.res.Baselines, c.Verdict)
	}
	c, err = proxyCrashScenario{}.run(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if c.Outcome != faults.SurvivedExact || len(c.Trials) != 2 {
		t.Errorf("proxy-crash-rotation: %s: %s", c.Outcome, c.Verdict)
	}
	if os.Geteuid() != 0 {
		t.Skip("the outage's tmpfs needs root")
	}
	tr, err := outageTrial(ctx, b, "enospc", &faults.Cell{Usage: map[string]faults.Usage{}})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Outcome != faults.RecoveredAuto {
		t.Errorf("outage enospc: %s: %s", tr.Outcome, tr.Note)
	}
	if out, _ := exec.Command("mount").Output(); filepath.IsAbs(b.dir) && strings.Contains(string(out), b.dir) {
		t.Errorf("a tmpfs is left mounted under %s", b.dir)
	}
}

// TestLostWritesWithBackupd: a power cut after each backup that backupd
// reported done (first and incremental, the repository under the
// lost-writes FUSE layer) loses none of its snapshots: every one is listed
// and restores exact, its full check is clean, the next backup succeeds.
// The layer saw backupd's fsyncs.
func TestLostWritesWithBackupd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs backupd")
	}
	b := testBed(t, "backupd")
	if r := (lostWritesScenario{}).notApplicable(b); r != "" {
		t.Skip(r)
	}
	c, err := lostWritesScenario{}.run(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if c.Outcome != faults.SurvivedExact || len(c.Trials) != 2 {
		t.Fatalf("lost-writes: %s: %s", c.Outcome, c.Verdict)
	}
	for _, tr := range c.Trials {
		t.Logf("%s: %s", tr.Point, tr.Note)
		if !strings.Contains(tr.Note, "fsyncs seen") || strings.Contains(tr.Note, "(0 fsyncs seen)") {
			t.Errorf("%s: %s: the layer saw no fsync", tr.Point, tr.Note)
		}
	}
}
