package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbackup/backupd/bench/faults"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	r := &faults.Results{Started: start, Finished: start.Add(time.Minute), Profile: "quick", Cells: []faults.Cell{
		{Tool: faults.Subject, Scenario: faults.ScenarioCrashBackup, Workload: "w", Outcome: faults.RecoveredAuto, Verdict: "next backup ran",
			TimeToRecoverSeconds: ptr(3.5)},
		{Tool: "synthpeer", Scenario: faults.ScenarioCrashBackup, Workload: "w", Outcome: faults.NeededHuman, Verdict: "unlock needed",
			TimeToRecoverSeconds: ptr(9.0)},
	}}
	if err := faults.Write(dir, r); err != nil {
		t.Fatal(err)
	}
	// Remove the renderings Write made: run must make them again.
	for _, n := range []string{"faults.md", "faults.om", "faults-recovery.svg", "faults-recovery.png"} {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "new", "dir")
	for _, tc := range []struct {
		name string
		args []string
		dir  string
	}{
		{"beside the file", []string{filepath.Join(dir, "faults.json")}, dir},
		{"into -out", []string{"-out", out, filepath.Join(dir, "faults.json")}, out},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := run(tc.args, &stdout, &stderr); err != nil {
				t.Fatalf("%v\n%s", err, stderr.String())
			}
			for _, n := range []string{"faults.md", "faults.om", "faults-recovery.svg", "faults-recovery.png"} {
				if fi, err := os.Stat(filepath.Join(tc.dir, n)); err != nil || fi.Size() == 0 {
					t.Errorf("%s: %v", n, err)
				}
				if !strings.Contains(stdout.String(), filepath.Join(tc.dir, n)) {
					t.Errorf("%s not in the output %q", n, stdout.String())
				}
			}
			md, _ := os.ReadFile(filepath.Join(tc.dir, "faults.md"))
			if !strings.Contains(string(md), "unlock needed") {
				t.Errorf("faults.md lacks the peer's verdict:\n%s", md)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "faults.json")
	if err := os.WriteFile(bad, []byte(`{"cells":[{"tool":"x","scenario":"nope","outcome":"survived_exact","verdict":"v"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no file", nil, "want one faults.json, got 0"},
		{"missing file", []string{filepath.Join(dir, "absent.json")}, "absent.json"},
		{"invalid results", []string{bad}, `unknown scenario "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(tc.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run(%q) = %v, want an error with %q", tc.args, err, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
