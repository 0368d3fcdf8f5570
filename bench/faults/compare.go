package faults

import (
	"math"
	"slices"
	"sort"
)

// MeasurePeakRSS is the healthy-phase measure of memory: the highest peak
// RSS of the healthy cell's runs.
const MeasurePeakRSS = "peak_rss"

// Target is one healthy-phase target (bench/README.md, "Ratios"): backupd's
// figure divided by the best peer's must be at most Max.
type Target struct {
	// Measure is a usage key of the healthy cell (its wall time) or
	// MeasurePeakRSS.
	Measure string
	Title   string
	Max     float64
}

// Targets lists the healthy-phase targets.
func Targets() []Target {
	return []Target{
		{UsageFirstBackup, "first backup wall time", 0.8},
		{UsageNoChange, "no-change backup wall time", 0.25},
		{UsageChange, "1% change backup wall time", 0.25},
		{UsageRestore, "full restore wall time", 0.8},
		{MeasurePeakRSS, "peak RSS", 1.0},
	}
}

// Status is how a target fared.
type Status string

// The statuses of a target.
const (
	Met      Status = "met"
	Missed   Status = "missed"
	NoFigure Status = "no figure" // backupd or every peer lacks the figure
)

// Figure is one tool's value of a measure.
type Figure struct {
	Tool  string
	Value float64
}

// Ratio is one target in one workload.
type Ratio struct {
	Workload string
	Target   Target
	// Subject is backupd's figure; nil if it has none.
	Subject *float64
	// Peers are the figures of the peers that count (in tool order).
	Peers []Figure
	// Best is the lowest of Peers; nil if there are none.
	Best *Figure
	// Value is *Subject / Best.Value when both exist.
	Value  float64
	Status Status
}

// healthyFigure returns a healthy cell's figure of a measure. Only runs
// that completed count (a usage entry with a wall time), and a restore
// only if it was verified: the cell's outcome is neither silent wrong data
// nor data lost.
func healthyFigure(c *Cell, measure string) (float64, bool) {
	if c == nil || c.Outcome == NotApplicable {
		return 0, false
	}
	if measure == MeasurePeakRSS {
		var peak int64
		for _, u := range c.Usage {
			peak = max(peak, u.PeakRSSBytes)
		}
		return float64(peak), peak > 0
	}
	if measure == UsageRestore && c.Outcome.Rank() >= SilentWrongData.Rank() {
		return 0, false
	}
	u, ok := c.Usage[measure]
	return u.WallSeconds, ok && u.WallSeconds > 0
}

// healthyCell returns a tool's healthy cell of a workload: the one without
// a variant if there is one, else the first.
func healthyCell(r *Results, tool, workload string) *Cell {
	var found *Cell
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Tool != tool || c.Workload != workload || c.Scenario != ScenarioHealthy {
			continue
		}
		if c.Variant == "" {
			return c
		}
		if found == nil {
			found = c
		}
	}
	return found
}

// HealthyRatios sets backupd's healthy-phase figures against the best
// peer's, per workload that has healthy cells and per target.
func HealthyRatios(r *Results) []Ratio {
	var out []Ratio
	for _, w := range workloadsOf(r) {
		has := slices.ContainsFunc(r.Cells, func(c Cell) bool { return c.Workload == w && c.Scenario == ScenarioHealthy })
		if !has {
			continue
		}
		for _, t := range Targets() {
			rt := Ratio{Workload: w, Target: t, Status: NoFigure}
			if v, ok := healthyFigure(healthyCell(r, Subject, w), t.Measure); ok {
				rt.Subject = &v
			}
			for _, tool := range toolsOf(r) {
				if tool == Subject {
					continue
				}
				if v, ok := healthyFigure(healthyCell(r, tool, w), t.Measure); ok {
					rt.Peers = append(rt.Peers, Figure{tool, v})
					if rt.Best == nil || v < rt.Best.Value {
						rt.Best = &Figure{tool, v}
					}
				}
			}
			if rt.Subject != nil && rt.Best != nil {
				rt.Value = *rt.Subject / rt.Best.Value
				rt.Status = Missed
				if rt.Value <= t.Max {
					rt.Status = Met
				}
			}
			out = append(out, rt)
		}
	}
	return out
}

// Units of figures.
const (
	unitSeconds = "s"
	unitBytes   = "bytes"
	unitShare   = "share"
	unitCount   = "count"
)

// figure is one measured value of a cell.
type figure struct {
	key, title string
	value      float64
	unit       string
	// higherBetter is true for shares found; lower is better otherwise.
	higherBetter bool
}

// usageKeys returns the usage keys of a cell in report order.
func usageKeys(u map[string]Usage) []string {
	var known, other []string
	for _, k := range usageOrder {
		if _, ok := u[k]; ok {
			known = append(known, k)
		}
	}
	for k := range u {
		if !slices.Contains(usageOrder, k) {
			other = append(other, k)
		}
	}
	sort.Strings(other)
	return append(known, other...)
}

// figures returns every figure a cell measured, in report order.
func figures(c *Cell) []figure {
	var out []figure
	if c.TimeToDetectSeconds != nil {
		out = append(out, figure{"time_to_detect", "time to detect", *c.TimeToDetectSeconds, unitSeconds, false})
	}
	if c.TimeToRecoverSeconds != nil {
		out = append(out, figure{"time_to_recover", "time to a good snapshot", *c.TimeToRecoverSeconds, unitSeconds, false})
	}
	for _, k := range usageKeys(c.Usage) {
		u := c.Usage[k]
		if u.WallSeconds > 0 {
			out = append(out, figure{"wall/" + k, PhaseTitle(k) + " wall time", u.WallSeconds, unitSeconds, false})
		}
		if u.CPUSeconds > 0 {
			out = append(out, figure{"cpu/" + k, PhaseTitle(k) + " CPU time", u.CPUSeconds, unitSeconds, false})
		}
		if u.PeakRSSBytes > 0 {
			out = append(out, figure{"rss/" + k, PhaseTitle(k) + " peak RSS", float64(u.PeakRSSBytes), unitBytes, false})
		}
	}
	if d := c.Detection; d != nil && d.Injected > 0 {
		n := float64(d.Injected)
		out = append(out,
			figure{"detected", "share of injected damage detected", float64(d.Detected) / n, unitShare, true},
			figure{"named", "share of injected damage named", float64(d.Named) / n, unitShare, true},
			figure{"restore_silent", "restores that wrote damaged data with success", float64(d.RestoreSilent), unitCount, false})
		if d.FullCheckSeconds > 0 {
			out = append(out, figure{"full_check", "full check time", d.FullCheckSeconds, unitSeconds, false})
		}
		if d.IncrementalCheckSeconds != nil {
			out = append(out, figure{"incremental_check", "incremental check time", *d.IncrementalCheckSeconds, unitSeconds, false})
		}
	}
	if o := c.Orphans; o != nil {
		out = append(out,
			figure{"orphans_left", "space left behind", float64(o.LeftBytes), unitBytes, false},
			figure{"orphans_after_prune", "space left after prune", float64(o.AfterPruneBytes), unitBytes, false})
	}
	if l := c.Latency; l != nil && l.Samples > 0 {
		out = append(out,
			figure{"latency_p50", "writer p50 latency", l.P50Seconds, unitSeconds, false},
			figure{"latency_p99", "writer p99 latency", l.P99Seconds, unitSeconds, false},
			figure{"latency_max", "writer max latency", l.MaxSeconds, unitSeconds, false})
	}
	return out
}

// MeasureOutcome is the Finding.Measure of an outcome that ranks better.
const MeasureOutcome = "outcome"

// Finding is one place where a peer does better than backupd: an outcome
// that ranks better, or a measured figure that beats backupd's.
type Finding struct {
	Scenario, Workload string
	Peer, PeerVariant  string
	SubjectVariant     string
	// Measure is MeasureOutcome or the figure's key; Title says it in
	// words.
	Measure, Title string
	// PeerValue and SubjectValue are the figures in Unit ("s", "bytes",
	// "share", "count"); for an outcome, the ranks.
	PeerValue, SubjectValue float64
	Unit                    string
	// The two cells' outcomes and verdicts.
	PeerOutcome, SubjectOutcome Outcome
	PeerVerdict, SubjectVerdict string
}

// subjectCells returns backupd's cells to compare a peer's cell with: the
// one of the same scenario, workload and variant, or, if there is none,
// every one of the scenario and workload.
func subjectCells(r *Results, peer *Cell) []*Cell {
	var same []*Cell
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Tool != Subject || c.Scenario != peer.Scenario || c.Workload != peer.Workload {
			continue
		}
		if c.Variant == peer.Variant {
			return []*Cell{c}
		}
		same = append(same, c)
	}
	return same
}

// PeerBetter lists, from the data alone, every cell where a peer does
// better than backupd: its outcome ranks better (both applicable), or one
// of its figures beats backupd's figure of the same measure. Findings are
// in report order: scenario, workload, then the order of the cells.
func PeerBetter(r *Results) []Finding {
	var out []Finding
	for _, sc := range scenariosOf(r) {
		for _, w := range workloadsOf(r) {
			for i := range r.Cells {
				p := &r.Cells[i]
				if p.Tool == Subject || p.Scenario != sc || p.Workload != w {
					continue
				}
				for _, s := range subjectCells(r, p) {
					out = append(out, compareCells(p, s)...)
				}
			}
		}
	}
	return out
}

func compareCells(p, s *Cell) []Finding {
	base := Finding{Scenario: p.Scenario, Workload: p.Workload, Peer: p.Tool, PeerVariant: p.Variant, SubjectVariant: s.Variant,
		PeerOutcome: p.Outcome, SubjectOutcome: s.Outcome, PeerVerdict: p.Verdict, SubjectVerdict: s.Verdict}
	var out []Finding
	if pr, sr := p.Outcome.Rank(), s.Outcome.Rank(); pr >= 0 && sr >= 0 && pr < sr {
		f := base
		f.Measure, f.Title, f.PeerValue, f.SubjectValue = MeasureOutcome, "outcome", float64(pr), float64(sr)
		out = append(out, f)
	}
	sf := map[string]figure{}
	for _, x := range figures(s) {
		sf[x.key] = x
	}
	for _, x := range figures(p) {
		y, ok := sf[x.key]
		if !ok || math.IsNaN(x.value) || math.IsNaN(y.value) {
			continue
		}
		if (x.higherBetter && x.value > y.value) || (!x.higherBetter && x.value < y.value) {
			f := base
			f.Measure, f.Title, f.PeerValue, f.SubjectValue, f.Unit = x.key, x.title, x.value, y.value, x.unit
			out = append(out, f)
		}
	}
	return out
}

// toolsOf returns the tools of a run: backupd first, then the declared
// tools in order, then any tool that only appears in cells.
func toolsOf(r *Results) []string {
	var out []string
	add := func(n string) {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	has := func(n string) bool {
		return slices.ContainsFunc(r.Tools, func(t Tool) bool { return t.Name == n }) ||
			slices.ContainsFunc(r.Cells, func(c Cell) bool { return c.Tool == n })
	}
	if has(Subject) {
		add(Subject)
	}
	for _, t := range r.Tools {
		add(t.Name)
	}
	for _, c := range r.Cells {
		add(c.Tool)
	}
	return out
}

// workloadsOf returns the workloads of a run: the declared ones in order,
// then any that only appears in cells.
func workloadsOf(r *Results) []string {
	var out []string
	for _, w := range r.Workloads {
		if !slices.Contains(out, w.Name) {
			out = append(out, w.Name)
		}
	}
	for _, c := range r.Cells {
		if !slices.Contains(out, c.Workload) {
			out = append(out, c.Workload)
		}
	}
	return out
}

// scenariosOf returns the scenarios that have cells, in report order.
func scenariosOf(r *Results) []string {
	var out []string
	for _, s := range Scenarios() {
		if slices.ContainsFunc(r.Cells, func(c Cell) bool { return c.Scenario == s }) {
			out = append(out, s)
		}
	}
	return out
}

// sortedKeys returns the keys of m, sorted.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
