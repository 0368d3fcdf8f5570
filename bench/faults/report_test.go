package faults

import (
	"strings"
	"testing"
	"time"
)

// healthy returns a healthy cell with the given wall times and peak RSS.
func healthy(tool, workload string, first, noChange, change, restore float64, rssMiB int64) Cell {
	return Cell{Tool: tool, Scenario: ScenarioHealthy, Workload: workload, Outcome: SurvivedExact, Verdict: "every restore matched",
		Usage: map[string]Usage{
			UsageFirstBackup: {WallSeconds: first, PeakRSSBytes: rssMiB << 20},
			UsageNoChange:    {WallSeconds: noChange},
			UsageChange:      {WallSeconds: change},
			UsageRestore:     {WallSeconds: restore, PeakRSSBytes: rssMiB << 19},
		}}
}

func TestHealthyRatios(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cells []Cell
		// want maps a measure to its status and, when it has one, the
		// best peer.
		want map[string][2]string
	}{
		{
			name: "met and missed against the fastest peer",
			cells: []Cell{
				healthy(Subject, "w", 4, 0.5, 0.1, 3, 50),
				healthy("p1", "w", 10, 1, 1, 5, 60),
				healthy("p2", "w", 6, 3, 0.3, 4, 40),
			},
			want: map[string][2]string{
				UsageFirstBackup: {string(Met), "p2"},    // 4/6 = 0.67 ≤ 0.8
				UsageNoChange:    {string(Missed), "p1"}, // 0.5/1 = 0.5 > 0.25
				UsageChange:      {string(Missed), "p2"}, // 0.1/0.3 = 0.33 > 0.25
				UsageRestore:     {string(Met), "p2"},    // 3/4 = 0.75 ≤ 0.8
				MeasurePeakRSS:   {string(Missed), "p2"}, // 50/40 > 1
			},
		},
		{
			name: "an unverified restore does not count as the best peer's",
			cells: []Cell{
				healthy(Subject, "w", 4, 0.2, 0.2, 3, 50),
				func() Cell {
					c := healthy("fast-but-wrong", "w", 5, 1, 1, 1, 60)
					c.Outcome, c.Verdict = SilentWrongData, "restore differed"
					return c
				}(),
				healthy("slow", "w", 5, 1, 1, 10, 60),
			},
			want: map[string][2]string{UsageRestore: {string(Met), "slow"}, UsageFirstBackup: {string(Met), "fast-but-wrong"}},
		},
		{
			name:  "no peer: no figure",
			cells: []Cell{healthy(Subject, "w", 4, 0.2, 0.2, 3, 50)},
			want:  map[string][2]string{UsageFirstBackup: {string(NoFigure), ""}, MeasurePeakRSS: {string(NoFigure), ""}},
		},
		{
			name:  "backupd without the figure: no figure",
			cells: []Cell{{Tool: Subject, Scenario: ScenarioHealthy, Workload: "w", Outcome: NotApplicable, Verdict: "did not run", Reason: "r"}, healthy("p", "w", 1, 1, 1, 1, 1)},
			want:  map[string][2]string{UsageNoChange: {string(NoFigure), "p"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := map[string]Ratio{}
			for _, rt := range HealthyRatios(&Results{Cells: tc.cells}) {
				got[rt.Target.Measure] = rt
			}
			for m, want := range tc.want {
				rt, ok := got[m]
				if !ok {
					t.Fatalf("%s: no ratio", m)
				}
				best := ""
				if rt.Best != nil {
					best = rt.Best.Tool
				}
				if string(rt.Status) != want[0] || best != want[1] {
					t.Errorf("%s: %s against %q (ratio %.2f), want %s against %q", m, rt.Status, best, rt.Value, want[0], want[1])
				}
			}
		})
	}
}

func TestPeerBetter(t *testing.T) {
	cell := func(tool, variant string, o Outcome, recover float64) Cell {
		return Cell{Tool: tool, Scenario: ScenarioCrashBackup, Workload: "w", Variant: variant, Outcome: o, Verdict: tool + " verdict",
			TimeToRecoverSeconds: f64(recover)}
	}
	for _, tc := range []struct {
		name  string
		cells []Cell
		// want lists "peer measure" of the findings, in order.
		want []string
	}{
		{"backupd better everywhere", []Cell{cell(Subject, "", SurvivedExact, 1), cell("p", "", RecoveredAuto, 2)}, nil},
		{"a peer's outcome ranks better", []Cell{cell(Subject, "", NeededHuman, 1), cell("p", "", RecoveredAuto, 2)}, []string{"p outcome"}},
		{"a peer recovers sooner", []Cell{cell(Subject, "", SurvivedExact, 5), cell("p", "", SurvivedExact, 2)}, []string{"p time_to_recover"}},
		{"both", []Cell{cell(Subject, "", DataLost, 5), cell("p", "", SilentWrongData, 2)}, []string{"p outcome", "p time_to_recover"}},
		{"a tie is not better", []Cell{cell(Subject, "", RecoveredAuto, 2), cell("p", "", RecoveredAuto, 2)}, nil},
		{"not applicable ranks nowhere", []Cell{
			{Tool: Subject, Scenario: ScenarioCrashBackup, Workload: "w", Outcome: NotApplicable, Verdict: "v", Reason: "r"},
			cell("p", "", SurvivedExact, 2)}, nil},
		{"another workload is not compared", []Cell{cell(Subject, "", DataLost, 5),
			{Tool: "p", Scenario: ScenarioCrashBackup, Workload: "other", Outcome: SurvivedExact, Verdict: "v", TimeToRecoverSeconds: f64(1)}}, nil},
		{"a peer without a variant meets every variant of backupd", []Cell{
			cell(Subject, "budget", SurvivedExact, 1), cell(Subject, "no-budget", NeededHuman, 1), cell("p", "", RecoveredAuto, 1)},
			[]string{"p outcome"}},
		{"the same variant is compared alone", []Cell{
			cell(Subject, "s3", SurvivedExact, 1), cell(Subject, "local", NeededHuman, 1), cell("p", "s3", RecoveredAuto, 1)}, nil},
		{"detection: a higher share found is better", []Cell{
			{Tool: Subject, Scenario: ScenarioRepoCorruption, Workload: "w", Outcome: DetectedReported, Verdict: "v", Detection: &Detection{Injected: 10, Detected: 8, Named: 8}},
			{Tool: "p", Scenario: ScenarioRepoCorruption, Workload: "w", Outcome: DetectedReported, Verdict: "v", Detection: &Detection{Injected: 10, Detected: 9, Named: 7, RestoreSilent: 1}}},
			[]string{"p detected"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, f := range PeerBetter(&Results{Cells: tc.cells}) {
				got = append(got, f.Peer+" "+f.Measure)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("findings %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMarkdown(t *testing.T) {
	for _, tc := range []struct {
		name          string
		r             *Results
		charts        []Chart
		want, notWant []string
	}{
		{
			name: "a peer that does better is listed with its figures",
			r: &Results{Cells: []Cell{
				{Tool: Subject, Scenario: ScenarioCrashBackup, Workload: "w", Outcome: NeededHuman, Verdict: "needed unlock", TimeToRecoverSeconds: f64(40)},
				{Tool: "peerx", Scenario: ScenarioCrashBackup, Workload: "w", Outcome: RecoveredAuto, Verdict: "next run went on", TimeToRecoverSeconds: f64(12.5)},
			}},
			want: []string{
				"## Where a peer does better",
				"- **peerx**, Killed during a backup / w: recovered automatically (next run went on) against backupd's needed a human (needed unlock).",
				"- **peerx**, Killed during a backup / w: time to a good snapshot 12.5 s against backupd's 40.0 s (backupd's is 3.20× this).",
				"| w | **needed a human**: needed unlock | **recovered automatically**: next run went on |",
			},
			notWant: []string{"Nowhere in this run"},
		},
		{
			name: "nowhere better",
			r: &Results{Cells: []Cell{
				{Tool: Subject, Scenario: ScenarioOutage, Workload: "w", Outcome: SurvivedExact, Verdict: "kept going"},
				{Tool: "peerx", Scenario: ScenarioOutage, Workload: "w", Outcome: NeededHuman, Verdict: "stuck lock"},
			}},
			want:    []string{"Nowhere in this run", "### 3. Storage outage (`outage`)"},
			notWant: []string{"- **peerx**"},
		},
		{
			name: "targets met and missed",
			r:    &Results{Cells: []Cell{healthy(Subject, "w", 4, 0.5, 0.1, 3, 50), healthy("peerx", "w", 10, 1, 1, 5, 60)}},
			want: []string{
				"| first backup wall time | 4.00 s | 10.0 s | peerx 10.0 s | 0.40× | ≤ 0.80× | **met** |",
				"| no-change backup wall time | 500 ms | 1.00 s | peerx 1.00 s | 0.50× | ≤ 0.25× | **missed** |",
				"| 1% change backup wall time | 100 ms | 1.00 s | peerx 1.00 s | 0.10× | ≤ 0.25× | **met** |",
				"| peak RSS | 50.0 MiB | 60.0 MiB | peerx 60.0 MiB | 0.83× | ≤ 1.00× | **met** |",
			},
		},
		{
			name: "summary, pipes escaped, not applicable with its reason, charts linked",
			r: &Results{
				Started: mustTime(t, "2031-01-02T03:04:05Z"), Finished: mustTime(t, "2031-01-02T04:05:06Z"), Profile: "full", Seed: 7,
				Host:          Host{Hostname: "h1", CPUs: 2, GoOS: "linux", GoArch: "amd64", Kernel: "6.1"},
				CheckRestores: "a 90 MiB tmpfs (RAM)",
				Tools:         []Tool{{Name: Subject, Version: "v1"}, {Name: "peerx", Version: "9.9", Settings: "a|b"}},
				Cells: []Cell{
					{Tool: Subject, Scenario: ScenarioLostWrites, Workload: "w", Outcome: SurvivedExact, Verdict: "fine"},
					{Tool: "peerx", Scenario: ScenarioLostWrites, Workload: "w", Outcome: NotApplicable, Verdict: "not run", Reason: "no such backend"},
				}},
			charts: []Chart{{Name: "faults-recovery", Title: "Recovery", About: "about"}},
			want: []string{
				"| date | 2031-01-02 03:04 UTC to 2031-01-02 04:05 UTC (running time 1 h 1 min) |",
				"| profile | full (seed 7) |",
				"| host | h1 (2 CPUs, linux/amd64, kernel 6.1) |",
				"| versions | backupd v1, peerx 9.9 |",
				"| verification restores | into a 90 MiB tmpfs (RAM); the healthy phase's timed restores and the crash-restore scenario's on the disk |",
				"| peerx | 9.9 | a\\|b |",
				"**not applicable**: not run (no such backend)",
				"![Recovery](faults-recovery.svg)",
				"[PNG](faults-recovery.png)",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			md := string(Markdown(tc.r, tc.charts))
			for _, w := range tc.want {
				if !strings.Contains(md, w) {
					t.Errorf("report lacks %q:\n%s", w, md)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(md, w) {
					t.Errorf("report has %q:\n%s", w, md)
				}
			}
		})
	}
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
