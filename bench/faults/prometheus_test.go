package faults

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/dashboards"
	"github.com/meshbackup/backupd/internal/promtest"
	"github.com/meshbackup/backupd/internal/tools"
)

// committedResults is the fault benchmark's last committed run, if any.
const committedResults = "../results/faults.json"

// TestDashboardQueriesOnPrometheus writes the synthetic run's faults.om,
// backfills it into a TSDB with the real `promtool tsdb
// create-blocks-from openmetrics`, starts the real Prometheus on it and
// runs every benchmark query of the dashboards at the run's end: each
// returns data, the outcome table shows each tool's worst class per
// scenario, and the targets panel backupd's ratios. A committed
// bench/results/faults.json is rendered and loaded the same way.
func TestDashboardQueriesOnPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus")
	}
	t.Run("synthetic", func(t *testing.T) { checkOnPrometheus(t, synthetic(), true) })
	if _, err := os.Stat(committedResults); err == nil {
		t.Run("committed", func(t *testing.T) {
			r, err := Read(committedResults)
			if err != nil {
				t.Fatal(err)
			}
			// A real run need not have data for every panel (a profile
			// may leave a scenario out); its queries must still run and
			// its outcomes show right.
			checkOnPrometheus(t, r, false)
		})
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

func checkOnPrometheus(t *testing.T, r *Results, everyPanel bool) {
	promtool, err := tools.Find("promtool")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Render(dir, r); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "tsdb")
	if out, err := exec.Command(promtool, "tsdb", "create-blocks-from", "openmetrics", filepath.Join(dir, "faults.om"), data).CombinedOutput(); err != nil {
		t.Fatalf("promtool tsdb create-blocks-from openmetrics: %v\n%s", err, out)
	}
	prom := promtest.Start(t, promtest.Options{Data: data})
	at := r.Finished
	if at.IsZero() {
		at = r.Started
	}

	var n int
	for _, b := range dashboards.Boards() {
		for _, p := range b.Panels {
			for _, q := range p.Queries {
				if !strings.Contains(q.Expr, MetricPrefix) {
					continue
				}
				n++
				res, err := prom.QueryAt(dashboards.Concrete(q.Expr), at)
				if err != nil {
					t.Errorf("%s/%s: %v", b.UID, p.Title, err)
					continue
				}
				switch {
				case len(res) == 0 && everyPanel:
					t.Errorf("%s/%s: no data from %s", b.UID, p.Title, q.Expr)
				case len(res) == 0:
					t.Logf("%s/%s: no data in this run", b.UID, p.Title)
				}
				if p.Matrix != nil {
					checkOutcomeTable(t, r, res)
				}
				if strings.Contains(q.Expr, famPeerRatio) {
					checkTargets(t, r, res)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no dashboard query of the benchmark's series")
	}
}

// checkOutcomeTable compares the outcome table's query with the worst
// rank per tool and scenario of the cells.
func checkOutcomeTable(t *testing.T, r *Results, res []promtest.Sample) {
	t.Helper()
	want := map[string]int{}
	for _, c := range r.Cells {
		k := c.Tool + "/" + c.Scenario
		if rk, ok := want[k]; !ok || c.Outcome.Rank() > rk {
			want[k] = c.Outcome.Rank()
		}
	}
	got := map[string]float64{}
	for _, s := range res {
		got[s.Metric["tool"]+"/"+s.Metric["scenario"]] = s.Value
	}
	if len(got) != len(want) {
		t.Errorf("outcome table has %d tool/scenario cells, want %d", len(got), len(want))
	}
	for k, rk := range want {
		if v, ok := got[k]; !ok || v != float64(rk) {
			t.Errorf("outcome table %s: %v, want rank %d", k, v, rk)
		}
	}
}

// checkTargets compares the targets panel (ratio ÷ target) with
// HealthyRatios.
func checkTargets(t *testing.T, r *Results, res []promtest.Sample) {
	t.Helper()
	got := map[string]float64{}
	for _, s := range res {
		got[s.Metric["workload"]+"/"+s.Metric["measure"]] = s.Value
	}
	n := 0
	for _, rt := range HealthyRatios(r) {
		if rt.Status == NoFigure {
			continue
		}
		n++
		k := rt.Workload + "/" + rt.Target.Measure
		want := rt.Value / rt.Target.Max
		if v, ok := got[k]; !ok || math.Abs(v-want) > 1e-9*want {
			t.Errorf("targets panel %s: %v, want %v", k, v, want)
		}
		if (got[k] <= 1) != (rt.Status == Met) {
			t.Errorf("targets panel %s: %v shown, but the target is %s", k, got[k], rt.Status)
		}
	}
	if len(got) != n {
		t.Errorf("targets panel has %d series, want %d", len(got), n)
	}
}
