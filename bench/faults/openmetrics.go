package faults

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// MetricPrefix starts the name of every family of faults.om.
const MetricPrefix = "backupd_bench_"

// BaselineTool is the tool label of the baselines (measurements with no
// backup running, Results.Baselines).
const BaselineTool = "none"

// Family is one metric family of faults.om. Every family is a gauge; every
// sample carries the run's Finished time. Label values come from the run's
// tools, scenarios, workloads, variants and the fixed sets named in Help,
// so a run's label sets are bounded by its cells.
type Family struct {
	Name, Help string
	// Unit is the OpenMetrics unit ("seconds", "bytes", "ratio"); the
	// name ends with it.
	Unit string
	// Labels are the label names of every sample, in order.
	Labels []string
}

var (
	cellLabels  = []string{"tool", "scenario", "workload", "variant"}
	phaseLabels = []string{"tool", "scenario", "workload", "variant", "phase"}
)

func withLabel(base []string, l string) []string {
	return append(base[:len(base):len(base)], l)
}

// The family names.
const (
	famOutcome       = MetricPrefix + "outcome"
	famOutcomeRank   = MetricPrefix + "outcome_rank"
	famWall          = MetricPrefix + "wall_seconds"
	famCPU           = MetricPrefix + "cpu_seconds"
	famRSS           = MetricPrefix + "peak_rss_bytes"
	famRead          = MetricPrefix + "read_bytes"
	famWritten       = MetricPrefix + "written_bytes"
	famDetect        = MetricPrefix + "time_to_detect_seconds"
	famRecover       = MetricPrefix + "time_to_recover_seconds"
	famDetection     = MetricPrefix + "detection_ratio"
	famDamage        = MetricPrefix + "damage_cases"
	famCheck         = MetricPrefix + "check_seconds"
	famOrphans       = MetricPrefix + "orphan_bytes"
	famLatency       = MetricPrefix + "writer_latency_seconds"
	famSamples       = MetricPrefix + "writer_samples"
	famPeerRatio     = MetricPrefix + "peer_ratio"
	famPeerTarget    = MetricPrefix + "peer_target_ratio"
	famRunDuration   = MetricPrefix + "run_duration_seconds"
	famRunFinished   = MetricPrefix + "run_finished_timestamp_seconds"
	quantileMaxLabel = "1"
)

// MetricFamilies lists the families of faults.om, in the order the file
// has them. Dashboards and their tests take the names from here.
func MetricFamilies() []Family {
	return []Family{
		{famOutcome, "1 for the outcome class of the cell, 0 for every other class (outcome: survived_exact, recovered_automatically, detected_and_reported, needed_human, silent_wrong_data, data_lost, not_applicable).", "", withLabel(cellLabels, "outcome")},
		{famOutcomeRank, "Rank of the cell's outcome class, 0 (survived exact) to 5 (data lost); -1 if the scenario does not apply to the tool.", "", cellLabels},
		{famWall, "Wall time of one phase of the cell (phase: a usage key such as backup, restore, first_backup, no_change_backup, change_1pct_backup).", "seconds", phaseLabels},
		{famCPU, "CPU time (user and system) of one phase of the cell.", "seconds", phaseLabels},
		{famRSS, "Peak resident set size of one phase of the cell.", "bytes", phaseLabels},
		{famRead, "Bytes read from storage in one phase of the cell.", "bytes", phaseLabels},
		{famWritten, "Bytes written to storage in one phase of the cell.", "bytes", phaseLabels},
		{famDetect, "Time from the fault until the tool reported it.", "seconds", cellLabels},
		{famRecover, "Time from the fault until a good snapshot (its restore matches its manifest) existed again.", "seconds", cellLabels},
		{famDetection, "Share of the injected repository damage the tool's full check reported.", "ratio", cellLabels},
		{famDamage, "Injected damage and what came of it (kind: injected, detected, named, restore_refused, restore_silent).", "", withLabel(cellLabels, "kind")},
		{famCheck, "Median wall time of the tool's check (kind: full, incremental).", "seconds", withLabel(cellLabels, "kind")},
		{famOrphans, "Repository space a crash left behind (stage: left, after_prune).", "bytes", withLabel(cellLabels, "stage")},
		{famLatency, "Latency of the proxy-like writer's append and fsync (quantile 0.5, 0.99, and 1 for the maximum); tool=\"none\" is the writer with no backup running.", "seconds", withLabel(cellLabels, "quantile")},
		{famSamples, "Appends of the proxy-like writer the latencies summarise.", "", cellLabels},
		{famPeerRatio, "backupd's healthy-phase figure divided by the best peer's (measure: first_backup, no_change_backup, change_1pct_backup, restore, peak_rss).", "ratio", []string{"workload", "measure"}},
		{famPeerTarget, "The target of backupd_bench_peer_ratio: the highest ratio that meets it.", "ratio", []string{"measure"}},
		{famRunDuration, "Running time of the benchmark run.", "seconds", []string{"profile"}},
		{famRunFinished, "When the benchmark run finished, in seconds since the epoch.", "seconds", []string{"profile"}},
	}
}

// omBuilder collects the samples of faults.om by family.
type omBuilder struct {
	fams  map[string]*dto.MetricFamily
	specs map[string]Family
	seen  map[string]bool
	ts    *int64
	err   error
}

// add appends a sample; values are given in the family's label order.
func (b *omBuilder) add(name string, v float64, values ...string) {
	if b.err != nil {
		return
	}
	spec, ok := b.specs[name]
	if !ok || len(values) != len(spec.Labels) {
		b.err = fmt.Errorf("openmetrics: family %s with labels %q: not a family or wrong labels", name, values)
		return
	}
	key := name + "\x00" + strings.Join(values, "\x00")
	if b.seen[key] {
		b.err = fmt.Errorf("openmetrics: %s%q twice", name, values)
		return
	}
	b.seen[key] = true
	m := &dto.Metric{Gauge: &dto.Gauge{Value: &v}, TimestampMs: b.ts}
	for i, l := range spec.Labels {
		m.Label = append(m.Label, &dto.LabelPair{Name: &l, Value: &values[i]})
	}
	mf := b.fams[name]
	mf.Metric = append(mf.Metric, m)
}

func optional(v *float64) (float64, bool) {
	if v == nil {
		return 0, false
	}
	return *v, true
}

// OpenMetrics renders r as OpenMetrics text (faults.om): the families of
// MetricFamilies, each sample timestamped with r.Finished (r.Started if
// the run has not finished; none if neither is set), and the closing
// "# EOF".
func OpenMetrics(r *Results) ([]byte, error) {
	b := &omBuilder{fams: map[string]*dto.MetricFamily{}, specs: map[string]Family{}, seen: map[string]bool{}}
	switch {
	case !r.Finished.IsZero():
		ms := r.Finished.UnixMilli()
		b.ts = &ms
	case !r.Started.IsZero():
		ms := r.Started.UnixMilli()
		b.ts = &ms
	}
	for _, f := range MetricFamilies() {
		b.specs[f.Name] = f
		mf := &dto.MetricFamily{Name: ptr(f.Name), Help: ptr(f.Help), Type: dto.MetricType_GAUGE.Enum()}
		if f.Unit != "" {
			mf.Unit = ptr(f.Unit)
		}
		b.fams[f.Name] = mf
	}
	for i := range r.Cells {
		c := &r.Cells[i]
		cl := []string{c.Tool, c.Scenario, c.Workload, c.Variant}
		with := func(v string) []string { return append(cl[:4:4], v) }
		for _, o := range Outcomes() {
			v := 0.0
			if o == c.Outcome {
				v = 1
			}
			b.add(famOutcome, v, with(string(o))...)
		}
		b.add(famOutcomeRank, float64(c.Outcome.Rank()), cl...)
		for _, k := range usageKeys(c.Usage) {
			u := c.Usage[k]
			b.add(famWall, u.WallSeconds, with(k)...)
			b.add(famCPU, u.CPUSeconds, with(k)...)
			b.add(famRSS, float64(u.PeakRSSBytes), with(k)...)
			b.add(famRead, float64(u.ReadBytes), with(k)...)
			b.add(famWritten, float64(u.WrittenBytes), with(k)...)
		}
		if v, ok := optional(c.TimeToDetectSeconds); ok {
			b.add(famDetect, v, cl...)
		}
		if v, ok := optional(c.TimeToRecoverSeconds); ok {
			b.add(famRecover, v, cl...)
		}
		if d := c.Detection; d != nil {
			if d.Injected > 0 {
				b.add(famDetection, d.Ratio(), cl...)
			}
			for _, kv := range []struct {
				kind string
				n    int
			}{{"injected", d.Injected}, {"detected", d.Detected}, {"named", d.Named}, {"restore_refused", d.RestoreRefused}, {"restore_silent", d.RestoreSilent}} {
				b.add(famDamage, float64(kv.n), with(kv.kind)...)
			}
			if d.FullCheckSeconds > 0 {
				b.add(famCheck, d.FullCheckSeconds, with("full")...)
			}
			if v, ok := optional(d.IncrementalCheckSeconds); ok {
				b.add(famCheck, v, with("incremental")...)
			}
		}
		if o := c.Orphans; o != nil {
			b.add(famOrphans, float64(o.LeftBytes), with("left")...)
			b.add(famOrphans, float64(o.AfterPruneBytes), with("after_prune")...)
		}
		if l := c.Latency; l != nil && l.Samples > 0 {
			addLatency(b, cl, l)
		}
	}
	for _, name := range sortedKeys(r.Baselines) {
		l := r.Baselines[name]
		if l.Samples == 0 {
			continue
		}
		sc, w := splitBaseline(name)
		addLatency(b, []string{BaselineTool, sc, w, ""}, &l)
	}
	for _, rt := range HealthyRatios(r) {
		if rt.Status != NoFigure {
			b.add(famPeerRatio, rt.Value, rt.Workload, rt.Target.Measure)
		}
	}
	if len(b.fams[famPeerRatio].Metric) > 0 {
		for _, t := range Targets() {
			b.add(famPeerTarget, t.Max, t.Measure)
		}
	}
	if !r.Started.IsZero() && !r.Finished.IsZero() {
		b.add(famRunDuration, r.Finished.Sub(r.Started).Seconds(), r.Profile)
	}
	if !r.Finished.IsZero() {
		b.add(famRunFinished, float64(r.Finished.UnixMilli())/1000, r.Profile)
	}
	if b.err != nil {
		return nil, b.err
	}
	var buf bytes.Buffer
	for _, f := range MetricFamilies() {
		mf := b.fams[f.Name]
		if len(mf.Metric) == 0 {
			continue
		}
		if _, err := expfmt.MetricFamilyToOpenMetrics(&buf, mf); err != nil {
			return nil, fmt.Errorf("openmetrics: %s: %w", f.Name, err)
		}
	}
	if _, err := expfmt.FinalizeOpenMetrics(&buf); err != nil {
		return nil, fmt.Errorf("openmetrics: %w", err)
	}
	return buf.Bytes(), nil
}

func addLatency(b *omBuilder, cl []string, l *Latency) {
	with := func(v string) []string { return append(cl[:4:4], v) }
	b.add(famLatency, l.P50Seconds, with("0.5")...)
	b.add(famLatency, l.P99Seconds, with("0.99")...)
	b.add(famLatency, l.MaxSeconds, with(quantileMaxLabel)...)
	b.add(famSamples, float64(l.Samples), cl...)
}

// splitBaseline splits a baseline's name "scenario/workload" (for example
// "impact/mesh"); a name without a slash is a scenario alone.
func splitBaseline(name string) (scenario, workload string) {
	sc, w, _ := strings.Cut(name, "/")
	return sc, w
}

func ptr[T any](v T) *T { return &v }

// formatFloat prints a figure for labels and text without exponent noise.
func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
