package faults

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestWorst(t *testing.T) {
	for _, tc := range []struct {
		in   []Outcome
		want Outcome
	}{
		{nil, NotApplicable},
		{[]Outcome{NotApplicable}, NotApplicable},
		{[]Outcome{SurvivedExact, NotApplicable}, SurvivedExact},
		{[]Outcome{SurvivedExact, RecoveredAuto, SurvivedExact}, RecoveredAuto},
		{[]Outcome{NeededHuman, DetectedReported}, NeededHuman},
		{[]Outcome{SilentWrongData, DataLost, SurvivedExact}, DataLost},
	} {
		if got := Worst(tc.in...); got != tc.want {
			t.Errorf("Worst(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestWriteReadValidate(t *testing.T) {
	dir := t.TempDir()
	ok := &Results{Profile: "quick", Cells: []Cell{
		{Tool: "restic", Scenario: ScenarioCrashBackup, Workload: "mesh", Outcome: RecoveredAuto, Verdict: "next backup ran",
			Trials: []Trial{{Point: "kill at 1s", Outcome: RecoveredAuto}}},
		{Tool: "borg", Scenario: ScenarioOutage, Workload: "mesh", Variant: "s3", Outcome: NotApplicable, Verdict: "n/a", Reason: "borg has no S3 backend"},
	}}
	if err := Write(dir, ok); err != nil {
		t.Fatal(err)
	}
	got, err := Read(filepath.Join(dir, "faults.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Cells) != 2 || got.Cells[0].Trials[0].Outcome != RecoveredAuto || got.Cells[1].Reason == "" {
		t.Errorf("round trip: %+v", got.Cells)
	}
	for _, tc := range []struct {
		cell Cell
		want string
	}{
		{Cell{Tool: "x", Scenario: "nope", Outcome: SurvivedExact, Verdict: "v"}, `unknown scenario "nope"`},
		{Cell{Tool: "x", Scenario: ScenarioImpact, Outcome: "fine", Verdict: "v"}, `unknown outcome "fine"`},
		{Cell{Tool: "x", Scenario: ScenarioImpact, Outcome: SurvivedExact}, "no verdict"},
		{Cell{Tool: "x", Scenario: ScenarioImpact, Outcome: NotApplicable, Verdict: "v"}, "without a reason"},
		{Cell{Tool: "x", Scenario: ScenarioImpact, Outcome: SurvivedExact, Verdict: "v", Trials: []Trial{{Point: "p", Outcome: "?"}}}, "trial 0 (p)"},
		{Cell{Tool: "restic", Scenario: ScenarioCrashBackup, Workload: "mesh", Outcome: SurvivedExact, Verdict: "v"}, "as cell 0"},
	} {
		err := Write(dir, &Results{Cells: []Cell{ok.Cells[0], tc.cell}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Write(%+v) = %v, want an error with %q", tc.cell, err, tc.want)
		}
	}
	// A refused write leaves the previous results whole.
	if got, err := Read(filepath.Join(dir, "faults.json")); err != nil || len(got.Cells) != 2 {
		t.Errorf("after refused writes: %v, %v", got, err)
	}
}
