package faults

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshbackup/backupd/dashboards"
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
	prom, err := tools.Find("prometheus")
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
	addr := startPrometheus(t, prom, dir, data)
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
				res, err := instantQuery(addr, dashboards.Concrete(q.Expr), at)
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
func checkOutcomeTable(t *testing.T, r *Results, res []promSample) {
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
func checkTargets(t *testing.T, r *Results, res []promSample) {
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

// startPrometheus runs Prometheus on the TSDB in data, with retention long
// enough for any run's date, on a free 127.0.0.1 port, until the test ends.
func startPrometheus(t *testing.T, prom, dir, data string) string {
	t.Helper()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  scrape_interval: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logPath := filepath.Join(dir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prom, "--config.file="+cfg, "--storage.tsdb.path="+data, "--storage.tsdb.retention.time=100y",
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("Prometheus not ready after a minute: %v\n%s", err, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// promSample is one series of an instant vector.
type promSample struct {
	Metric map[string]string
	Value  float64
}

// instantQuery runs an instant query at a time and returns its vector.
func instantQuery(addr, q string, at time.Time) ([]promSample, error) {
	u := "http://" + addr + "/api/v1/query?" + url.Values{
		"query": {q}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)}}.Encode()
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, body.Error)
	}
	if body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %s", q, body.Data.ResultType)
	}
	var out []promSample
	for _, s := range body.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v: %w", q, s.Value[1], err)
		}
		out = append(out, promSample{s.Metric, v})
	}
	return out, nil
}
