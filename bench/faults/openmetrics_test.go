package faults

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// omSample is one parsed sample of faults.om.
type omSample struct {
	labels labels.Labels
	ts     *int64
	value  float64
}

// omFamily is what the file says about one family.
type omFamily struct {
	help, unit string
	typ        model.MetricType
	samples    []omSample
}

// parseOM parses OpenMetrics text with Prometheus's own parser (the one
// scrapes and promtool's backfill use) and returns the families by name.
func parseOM(t *testing.T, b []byte) map[string]*omFamily {
	t.Helper()
	p := textparse.NewOpenMetricsParser(b, labels.NewSymbolTable())
	fams := map[string]*omFamily{}
	fam := func(name []byte) *omFamily {
		f := fams[string(name)]
		if f == nil {
			f = &omFamily{}
			fams[string(name)] = f
		}
		return f
	}
	for {
		et, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("openmetrics does not parse: %v", err)
		}
		switch et {
		case textparse.EntryHelp:
			n, h := p.Help()
			fam(n).help = string(h)
		case textparse.EntryType:
			n, typ := p.Type()
			fam(n).typ = typ
		case textparse.EntryUnit:
			n, u := p.Unit()
			fam(n).unit = string(u)
		case textparse.EntrySeries:
			_, ts, v := p.Series()
			var ls labels.Labels
			p.Labels(&ls)
			var tsCopy *int64
			if ts != nil {
				x := *ts
				tsCopy = &x
			}
			f := fam([]byte(ls.Get(model.MetricNameLabel)))
			f.samples = append(f.samples, omSample{ls, tsCopy, v})
		default:
			t.Fatalf("unexpected entry %v", et)
		}
	}
	return fams
}

func TestOpenMetrics(t *testing.T) {
	r := synthetic()
	b, err := OpenMetrics(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "\n# EOF\n") {
		t.Fatal("no # EOF line at the end")
	}
	fams := parseOM(t, b)
	specs := map[string]Family{}
	for _, f := range MetricFamilies() {
		specs[f.Name] = f
	}
	want := r.Finished.UnixMilli()
	// The values a label may take: the run's own names and the fixed sets.
	allowed := map[string][]string{
		"scenario": Scenarios(),
		"variant":  {"", "budget", "no-budget"},
		"phase":    {UsageBackup, UsageRestore, UsageFirstBackup, UsageNoChange, UsageChange},
		"kind":     {"injected", "detected", "named", "restore_refused", "restore_silent", "full", "incremental"},
		"stage":    {"left", "after_prune"},
		"quantile": {"0.5", "0.99", "1"},
		"measure":  {UsageFirstBackup, UsageNoChange, UsageChange, UsageRestore, MeasurePeakRSS},
		"profile":  {r.Profile},
		"tool":     {BaselineTool},
	}
	for _, tl := range r.Tools {
		allowed["tool"] = append(allowed["tool"], tl.Name)
	}
	for _, w := range r.Workloads {
		allowed["workload"] = append(allowed["workload"], w.Name)
	}
	for _, o := range Outcomes() {
		allowed["outcome"] = append(allowed["outcome"], string(o))
	}
	for name, f := range fams {
		spec, ok := specs[name]
		if !ok {
			t.Errorf("family %s is not in MetricFamilies", name)
			continue
		}
		if f.help != spec.Help || f.typ != model.MetricTypeGauge || f.unit != spec.Unit {
			t.Errorf("%s: help %q type %q unit %q, want %q gauge %q", name, f.help, f.typ, f.unit, spec.Help, spec.Unit)
		}
		if !strings.HasPrefix(name, MetricPrefix) || (spec.Unit != "" && !strings.HasSuffix(name, "_"+spec.Unit)) {
			t.Errorf("%s: not %s… ending in its unit %q", name, MetricPrefix, spec.Unit)
		}
		for _, s := range f.samples {
			if s.ts == nil || *s.ts != want {
				t.Errorf("%s: timestamp %v, want %d", s.labels, s.ts, want)
			}
			// Prometheus treats an empty value (variant="") as no label.
			var names []string
			s.labels.Range(func(l labels.Label) {
				if l.Name == model.MetricNameLabel {
					return
				}
				if !slices.Contains(allowed[l.Name], l.Value) {
					t.Errorf("%s: label %s=%q is none of %q", s.labels, l.Name, l.Value, allowed[l.Name])
				}
				if l.Value != "" {
					names = append(names, l.Name)
				}
			})
			wantNames := slices.DeleteFunc(slices.Clone(spec.Labels), func(l string) bool { return s.labels.Get(l) == "" })
			slices.Sort(wantNames)
			slices.Sort(names)
			if !slices.Equal(names, wantNames) {
				t.Errorf("%s: labels %v, want those of %v", s.labels, names, spec.Labels)
			}
		}
	}
	for _, name := range []string{famOutcome, famOutcomeRank, famWall, famCPU, famRSS, famDetect, famRecover, famDetection, famDamage,
		famCheck, famOrphans, famLatency, famSamples, famPeerRatio, famPeerTarget, famRunDuration, famRunFinished} {
		if fams[name] == nil || len(fams[name].samples) == 0 {
			t.Errorf("no samples of %s", name)
		}
	}

	// One-hot: each cell has exactly one outcome at 1, the cell's own,
	// and its rank.
	key := func(ls labels.Labels) string {
		return ls.Get("tool") + "/" + ls.Get("scenario") + "/" + ls.Get("workload") + "/" + ls.Get("variant")
	}
	ones, zeros := map[string][]string{}, map[string]int{}
	for _, s := range fams[famOutcome].samples {
		switch s.value {
		case 1:
			ones[key(s.labels)] = append(ones[key(s.labels)], s.labels.Get("outcome"))
		case 0:
			zeros[key(s.labels)]++
		default:
			t.Errorf("%s = %v, want 0 or 1", s.labels, s.value)
		}
	}
	ranks := map[string]float64{}
	for _, s := range fams[famOutcomeRank].samples {
		ranks[key(s.labels)] = s.value
	}
	for _, c := range r.Cells {
		k := c.Tool + "/" + c.Scenario + "/" + c.Workload + "/" + c.Variant
		if got := ones[k]; len(got) != 1 || got[0] != string(c.Outcome) || zeros[k] != len(Outcomes())-1 {
			t.Errorf("%s: outcomes at 1 %v and %d at 0, want only %s", k, got, zeros[k], c.Outcome)
		}
		if rk, ok := ranks[k]; !ok || rk != float64(c.Outcome.Rank()) {
			t.Errorf("%s: rank %v, want %d", k, rk, c.Outcome.Rank())
		}
	}

	// The baseline is the writer with no backup.
	found := false
	for _, s := range fams[famLatency].samples {
		if s.labels.Get("tool") == BaselineTool && s.labels.Get("workload") == "synth-small" && s.labels.Get("quantile") == "0.99" {
			found = s.value == r.Baselines["impact/synth-small"].P99Seconds
		}
	}
	if !found {
		t.Error("no baseline p99 of synth-small with the baseline's value")
	}
}

// The samples carry the run's end; a run not yet finished its start; and
// a results file with neither time still gives valid OpenMetrics, without
// timestamps.
func TestOpenMetricsTimestamps(t *testing.T) {
	start := time.Date(2031, 1, 2, 3, 4, 5, 600e6, time.UTC)
	cells := []Cell{{Tool: Subject, Scenario: ScenarioOutage, Workload: "w", Outcome: RecoveredAuto, Verdict: "v", TimeToRecoverSeconds: f64(3)}}
	for _, tc := range []struct {
		name string
		r    *Results
		want *int64
	}{
		{"finished", &Results{Started: start, Finished: start.Add(time.Hour), Cells: cells}, ptr(start.Add(time.Hour).UnixMilli())},
		{"not finished", &Results{Started: start, Cells: cells}, ptr(start.UnixMilli())},
		{"no times", &Results{Cells: cells}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := OpenMetrics(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			fams := parseOM(t, b)
			if len(fams[famRecover].samples) != 1 {
				t.Fatalf("time to recover: %+v", fams[famRecover])
			}
			for name, f := range fams {
				for _, s := range f.samples {
					if (s.ts == nil) != (tc.want == nil) || (s.ts != nil && *s.ts != *tc.want) {
						t.Errorf("%s %s: timestamp %v, want %v", name, s.labels, s.ts, tc.want)
					}
				}
			}
		})
	}
}
