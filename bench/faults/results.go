// Package faults holds the results of the fault-tolerance benchmark
// (`bench/cmd/bench -faults`): for every tool, scenario and workload, a
// cell with its outcome class, resource usage and timings, and writes them
// out: faults.json, the report faults.md, the charts faults-*.svg and
// faults-*.png, and faults.om, OpenMetrics text of the backupd_bench_*
// families (MetricFamilies) for `promtool tsdb create-blocks-from
// openmetrics` and the "backupd / Fault tolerance" dashboard.
//
// The harness in bench/cmd/bench fills a Results and calls Write;
// bench/cmd/faultreport renders a faults.json again (Render). Nothing here
// runs a tool, and nothing in the report is written in advance: which tool
// does better where comes from the cells alone.
package faults

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Outcome is the class of what a tool did with a fault, from best to worst.
type Outcome string

// The outcome classes, in Rank order (best first).
const (
	// SurvivedExact: the fault changed nothing a user would see; every
	// restore matched its manifest.
	SurvivedExact Outcome = "survived_exact"
	// RecoveredAuto: the fault broke a run, and the tool's next run (with
	// no human step) succeeded and every restore matched.
	RecoveredAuto Outcome = "recovered_automatically"
	// DetectedReported: damage the tool cannot undo (corruption at rest,
	// bit rot) was found and reported, naming what is damaged, and no
	// wrong data was restored.
	DetectedReported Outcome = "detected_and_reported"
	// NeededHuman: the tool only went on after an unlock, repair or
	// similar manual step.
	NeededHuman Outcome = "needed_human"
	// SilentWrongData: a restore or check reported success while data
	// differed from the manifest of the snapshot restored, or damage was
	// not reported.
	SilentWrongData Outcome = "silent_wrong_data"
	// DataLost: a snapshot reported done could no longer be restored.
	DataLost Outcome = "data_lost"
	// NotApplicable: the scenario cannot be applied to the tool (the
	// cell's Reason says why).
	NotApplicable Outcome = "not_applicable"
)

var outcomeOrder = []Outcome{SurvivedExact, RecoveredAuto, DetectedReported, NeededHuman, SilentWrongData, DataLost}

// Rank orders outcomes from best (0) to worst; NotApplicable and unknown
// classes rank -1.
func (o Outcome) Rank() int { return slices.Index(outcomeOrder, o) }

// Valid reports whether o is one of the classes.
func (o Outcome) Valid() bool { return o == NotApplicable || o.Rank() >= 0 }

// Worst returns the worst of the outcomes, ignoring NotApplicable; it
// returns NotApplicable if there is no other.
func Worst(os ...Outcome) Outcome {
	w := NotApplicable
	for _, o := range os {
		if o.Rank() > w.Rank() {
			w = o
		}
	}
	return w
}

// The scenario identifiers, in report order (the numbers of the fault
// benchmark in bench/README.md; "healthy" is the phase without faults).
const (
	ScenarioHealthy        = "healthy"
	ScenarioCrashBackup    = "crash-backup"
	ScenarioCrashRestore   = "crash-restore"
	ScenarioOutage         = "outage"
	ScenarioSourceBitRot   = "source-bitrot"
	ScenarioRepoCorruption = "repo-corruption"
	ScenarioProxyCrash     = "proxy-crash-rotation"
	ScenarioLostWrites     = "lost-writes"
	ScenarioImpact         = "impact"
)

// Scenarios lists the scenario identifiers in report order.
func Scenarios() []string {
	return []string{ScenarioHealthy, ScenarioCrashBackup, ScenarioCrashRestore, ScenarioOutage, ScenarioSourceBitRot,
		ScenarioRepoCorruption, ScenarioProxyCrash, ScenarioLostWrites, ScenarioImpact}
}

// Results is everything one run of the fault benchmark measured.
type Results struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Profile is "quick" or "full".
	Profile   string     `json:"profile"`
	Seed      uint64     `json:"seed"`
	Host      Host       `json:"host"`
	Tools     []Tool     `json:"tools"`
	Workloads []Workload `json:"workloads"`
	Cells     []Cell     `json:"cells"`
	// Baselines are measurements without any tool running, by name (for
	// example the proxy writer's latency with no backup: "impact/<workload>").
	Baselines map[string]Latency `json:"baselines,omitempty"`
	// CheckRestores says where the restores that verify the fault
	// scenarios' snapshots went ("a 81 MiB tmpfs (RAM)", "the disk (...)");
	// the healthy phase's timed restore is always on the disk.
	CheckRestores string `json:"check_restores,omitempty"`
}

// Host describes the machine the run was on.
type Host struct {
	Hostname string `json:"hostname"`
	CPUs     int    `json:"cpus"`
	Kernel   string `json:"kernel"`
	GoOS     string `json:"goos"`
	GoArch   string `json:"goarch"`
}

// Tool is one tool under test.
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Settings are the options the bench uses with it (its recommended
	// ones), in words or flags.
	Settings string `json:"settings"`
}

// Workload is one generated data set.
type Workload struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Files       int    `json:"files"`
	Bytes       int64  `json:"bytes"`
}

// Usage is what one tool process (or a phase of several) cost.
type Usage struct {
	WallSeconds  float64 `json:"wall_seconds"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	ReadBytes    int64   `json:"read_bytes"`
	WrittenBytes int64   `json:"written_bytes"`
}

// Usage keys of Cell.Usage. Every scenario that backs up and restores
// records UsageBackup and UsageRestore; the healthy phase records the
// others too.
const (
	UsageBackup      = "backup"
	UsageRestore     = "restore"
	UsageFirstBackup = "first_backup"
	UsageNoChange    = "no_change_backup"
	UsageChange      = "change_1pct_backup"
)

// Cell is one tool × scenario × workload (× variant).
type Cell struct {
	Tool     string `json:"tool"`
	Scenario string `json:"scenario"`
	Workload string `json:"workload"`
	// Variant distinguishes cells of one tool in one scenario, for
	// example "budget" and "no-budget" for backupd in the impact scenario.
	Variant string `json:"variant,omitempty"`
	// Outcome is the worst outcome of the trials.
	Outcome Outcome `json:"outcome"`
	// Verdict says in plain words what happened, for the report.
	Verdict string `json:"verdict"`
	// Reason says why the scenario does not apply (NotApplicable) or
	// failed to run.
	Reason string           `json:"reason,omitempty"`
	Usage  map[string]Usage `json:"usage,omitempty"`
	// TimeToDetectSeconds is how long from the fault until the tool
	// reported it (a failed run, a check naming damage); nil if it never
	// did or there was nothing to detect.
	TimeToDetectSeconds *float64 `json:"time_to_detect_seconds,omitempty"`
	// TimeToRecoverSeconds is how long from the fault until a good
	// snapshot (one whose restore matches its manifest) existed again.
	TimeToRecoverSeconds *float64   `json:"time_to_recover_seconds,omitempty"`
	Trials               []Trial    `json:"trials,omitempty"`
	Detection            *Detection `json:"detection,omitempty"`
	Orphans              *Orphans   `json:"orphans,omitempty"`
	Latency              *Latency   `json:"latency,omitempty"`
}

// Trial is one injection of a fault (one kill point, one corrupted file).
type Trial struct {
	// Point names where the fault was injected ("kill at 1.83s of the
	// incremental backup", "flip 1 byte of data/3f/3f2a…").
	Point                string   `json:"point"`
	Outcome              Outcome  `json:"outcome"`
	Note                 string   `json:"note,omitempty"`
	TimeToDetectSeconds  *float64 `json:"time_to_detect_seconds,omitempty"`
	TimeToRecoverSeconds *float64 `json:"time_to_recover_seconds,omitempty"`
	// HumanSteps are the manual commands the tool needed (unlock, repair).
	HumanSteps []string `json:"human_steps,omitempty"`
}

// Detection counts what a check found of injected repository damage.
type Detection struct {
	Injected int `json:"injected"`
	// Detected is how many injections the full check reported.
	Detected int `json:"detected"`
	// Named is how many the tool named (the damaged file or object).
	Named int `json:"named"`
	// RestoreRefused is how many restores of affected data failed rather
	// than writing bad data; RestoreSilent how many wrote it with success.
	RestoreRefused int `json:"restore_refused"`
	RestoreSilent  int `json:"restore_silent"`
	// FullCheckSeconds is the median wall time of the full-read check;
	// IncrementalCheckSeconds that of the tool's partial verification,
	// nil if it has none.
	FullCheckSeconds        float64  `json:"full_check_seconds"`
	IncrementalCheckSeconds *float64 `json:"incremental_check_seconds,omitempty"`
}

// Ratio is the detected fraction, 0 when nothing was injected.
func (d *Detection) Ratio() float64 {
	if d == nil || d.Injected == 0 {
		return 0
	}
	return float64(d.Detected) / float64(d.Injected)
}

// Orphans is the repository space a crash left behind.
type Orphans struct {
	LeftBytes       int64 `json:"left_bytes"`
	AfterPruneBytes int64 `json:"after_prune_bytes"`
}

// Latency summarises the proxy-like writer's append+fsync latencies.
type Latency struct {
	Samples    int     `json:"samples"`
	P50Seconds float64 `json:"p50_seconds"`
	P99Seconds float64 `json:"p99_seconds"`
	MaxSeconds float64 `json:"max_seconds"`
	// Histogram holds the latencies in buckets: upper bounds in seconds
	// (the last is +Inf, written as 0) and counts, for the charts.
	BucketBounds []float64 `json:"bucket_bounds,omitempty"`
	BucketCounts []int     `json:"bucket_counts,omitempty"`
}

// Validate checks that r is complete enough to report: known scenarios
// and outcomes, a verdict on every cell, a reason where one is needed, and
// no two cells of the same tool, scenario, workload and variant.
func (r *Results) Validate() error {
	seen := map[[4]string]int{}
	for i, c := range r.Cells {
		where := fmt.Sprintf("cell %d (%s/%s/%s)", i, c.Tool, c.Scenario, c.Workload)
		key := [4]string{c.Tool, c.Scenario, c.Workload, c.Variant}
		if j, dup := seen[key]; dup {
			return fmt.Errorf("%s: same tool, scenario, workload and variant %q as cell %d", where, c.Variant, j)
		}
		seen[key] = i
		switch {
		case !slices.Contains(Scenarios(), c.Scenario):
			return fmt.Errorf("%s: unknown scenario %q, want one of %v", where, c.Scenario, Scenarios())
		case !c.Outcome.Valid():
			return fmt.Errorf("%s: unknown outcome %q", where, c.Outcome)
		case c.Verdict == "":
			return fmt.Errorf("%s: no verdict", where)
		case c.Outcome == NotApplicable && c.Reason == "":
			return fmt.Errorf("%s: not applicable without a reason", where)
		}
		for j, t := range c.Trials {
			if !t.Outcome.Valid() {
				return fmt.Errorf("%s trial %d (%s): unknown outcome %q", where, j, t.Point, t.Outcome)
			}
		}
	}
	return nil
}

// Write validates r and writes it into dir as faults.json, then renders
// the report, the charts and the OpenMetrics file beside it (Render). Each
// file is replaced atomically; faults.json is written first, so a failed
// rendering never costs the measurements (`bench/cmd/faultreport` renders
// them again).
func Write(dir string, r *Results) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("fault results: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode fault results: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "faults.json"), append(b, '\n')); err != nil {
		return err
	}
	_, err = Render(dir, r)
	return err
}

// Read reads a faults.json written by Write.
func Read(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read fault results: %w", err)
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode fault results %s: %w", path, err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("fault results %s: %w", path, err)
	}
	return &r, nil
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory, synced, renamed into place and the directory synced, so an
// interrupted run or a crash leaves the previous file whole.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}
