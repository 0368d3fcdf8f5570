package faults

import (
	"fmt"
	"testing"
	"time"
)

func f64(v float64) *float64 { return &v }

// synthetic is a made-up run, for the tests only: backupd and two peers
// with invented names on two invented workloads, a cell of every tool,
// scenario and workload (two variants of backupd in the impact scenario),
// the outcome classes cycling through the cells so that every class
// appears, and every kind of figure somewhere.
func synthetic() *Results {
	start := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	r := &Results{
		Started: start, Finished: start.Add(83 * time.Minute), Profile: "quick", Seed: 42,
		Host: Host{Hostname: "synthetic-host", CPUs: 2, Kernel: "0.0-synthetic", GoOS: "linux", GoArch: "amd64"},
		Tools: []Tool{
			{Name: Subject, Version: "0.0.0-synthetic", Settings: "synthetic settings"},
			{Name: "synthpeer-a", Version: "1.0-synthetic", Settings: "--synthetic"},
			{Name: "synthpeer-b", Version: "2.0-synthetic", Settings: "made up | with a pipe"},
		},
		Workloads: []Workload{
			{Name: "synth-small", Description: "synthetic small set", Files: 100, Bytes: 10 << 20},
			{Name: "synth-large", Description: "synthetic large set", Files: 1000, Bytes: 1 << 30},
		},
		Baselines: map[string]Latency{
			"impact/synth-small": {Samples: 1000, P50Seconds: 0.0004, P99Seconds: 0.002, MaxSeconds: 0.01},
			"impact/synth-large": {Samples: 1000, P50Seconds: 0.0005, P99Seconds: 0.003, MaxSeconds: 0.02},
		},
	}
	classes := Outcomes()
	n := 0
	for _, sc := range Scenarios() {
		for wi, w := range r.Workloads {
			for ti, t := range r.Tools {
				variants := []string{""}
				if sc == ScenarioImpact && t.Name == Subject {
					variants = []string{"budget", "no-budget"}
				}
				for vi, v := range variants {
					scale := float64(1 + ti + 2*wi) // peers are slower, the large set slower still
					c := Cell{Tool: t.Name, Scenario: sc, Workload: w.Name, Variant: v,
						Outcome: classes[n%len(classes)]}
					n++
					c.Verdict = fmt.Sprintf("synthetic verdict %d: %s", n, c.Outcome.Label())
					if c.Outcome == NotApplicable {
						c.Reason = "synthetic reason"
					}
					c.Usage = map[string]Usage{
						UsageBackup:  {WallSeconds: 2 * scale, CPUSeconds: 3 * scale, PeakRSSBytes: int64(scale) << 25, ReadBytes: 1 << 20, WrittenBytes: 1 << 19},
						UsageRestore: {WallSeconds: 1.5 * scale, CPUSeconds: 2 * scale, PeakRSSBytes: int64(scale) << 24},
					}
					switch sc {
					case ScenarioHealthy:
						c.Outcome, c.Reason = SurvivedExact, ""
						c.Verdict = "every restore matched"
						c.Usage[UsageFirstBackup] = Usage{WallSeconds: 5 * scale, CPUSeconds: 6 * scale, PeakRSSBytes: int64(scale) << 26}
						// backupd's no-change backup misses its target: only
						// half the time of the fastest peer.
						c.Usage[UsageNoChange] = Usage{WallSeconds: 0.5 * (1 + float64(ti)), CPUSeconds: 0.4}
						c.Usage[UsageChange] = Usage{WallSeconds: 0.2 * scale, CPUSeconds: 0.3}
					case ScenarioCrashBackup, ScenarioCrashRestore, ScenarioProxyCrash, ScenarioOutage, ScenarioLostWrites:
						c.TimeToDetectSeconds = f64(0.5 * scale)
						// synthpeer-b gets a good snapshot sooner than backupd.
						c.TimeToRecoverSeconds = f64(map[int]float64{0: 30, 1: 45, 2: 20}[ti] + float64(wi))
						c.Orphans = &Orphans{LeftBytes: int64(ti) << 20, AfterPruneBytes: 0}
						c.Trials = []Trial{
							{Point: "synthetic kill at 1s", Outcome: SurvivedExact},
							{Point: "synthetic kill at 2s", Outcome: c.Outcome},
						}
						if c.Outcome == NeededHuman {
							c.Trials[1].HumanSteps = []string{t.Name + " unlock"}
						}
					case ScenarioRepoCorruption, ScenarioSourceBitRot:
						c.Detection = &Detection{Injected: 10, Detected: 10 - ti*3, Named: 10 - ti*4, RestoreRefused: 5 - ti, RestoreSilent: ti,
							FullCheckSeconds: 4 * scale}
						if ti == 0 {
							c.Detection.IncrementalCheckSeconds = f64(0.8)
						}
						c.TimeToDetectSeconds = f64(4 * scale)
					case ScenarioImpact:
						c.Latency = &Latency{Samples: 5000, P50Seconds: 0.0006 * scale, P99Seconds: 0.004 * scale * float64(1+vi), MaxSeconds: 0.03 * scale,
							BucketBounds: []float64{0.001, 0.01, 0.1, 0}, BucketCounts: []int{4000, 900, 99, 1}}
					}
					if c.Outcome == NotApplicable {
						// Nothing ran: no figures.
						c = Cell{Tool: c.Tool, Scenario: c.Scenario, Workload: c.Workload, Variant: c.Variant,
							Outcome: c.Outcome, Verdict: c.Verdict, Reason: c.Reason}
					}
					r.Cells = append(r.Cells, c)
				}
			}
		}
	}
	return r
}

// The synthetic run the rendering tests use covers every scenario and
// every outcome class, and is valid.
func TestSyntheticCoversEverything(t *testing.T) {
	r := synthetic()
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	scenarios, outcomes := map[string]bool{}, map[Outcome]bool{}
	for _, c := range r.Cells {
		scenarios[c.Scenario] = true
		if c.Scenario != ScenarioHealthy {
			outcomes[c.Outcome] = true
		}
	}
	for _, s := range Scenarios() {
		if !scenarios[s] {
			t.Errorf("no cell of scenario %s", s)
		}
	}
	for _, o := range Outcomes() {
		if !outcomes[o] {
			t.Errorf("no cell with outcome %s outside the healthy phase", o)
		}
	}
}
