// Package promtest runs a real Prometheus for tests (installed by
// scripts/install-tools.sh prometheus, found through internal/tools) on a
// free 127.0.0.1 port, stopped when the test ends, and asks it instant
// queries. The SLO rules, the dashboards and the node agent's metrics are
// tested against it rather than against a PromQL imitation.
package promtest

import (
	"encoding/json"
	"fmt"
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

	"github.com/meshbackup/backupd/internal/tools"
)

// Options say what the Prometheus does.
type Options struct {
	// Targets are host:port addresses scraped every second at /metrics
	// (job "backupd"), each with the labels of its entry in TargetLabels.
	Targets      []string
	TargetLabels []map[string]string
	// RuleFiles are loaded and evaluated every second.
	RuleFiles []string
	// Data is the TSDB directory (a fresh one if empty), for blocks made
	// beforehand; the retention is long enough for any date then.
	Data string
}

// Server is a running Prometheus.
type Server struct {
	Addr string
	log  string
}

// Start runs Prometheus until the test ends and waits until it is ready.
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	prom, err := tools.Find("prometheus")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n")
	if len(opt.RuleFiles) > 0 {
		cfg.WriteString("rule_files:\n")
		for _, f := range opt.RuleFiles {
			abs, err := filepath.Abs(f)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&cfg, "  - %q\n", abs)
		}
	}
	if len(opt.Targets) > 0 {
		cfg.WriteString("scrape_configs:\n  - job_name: backupd\n    static_configs:\n")
		for i, target := range opt.Targets {
			fmt.Fprintf(&cfg, "      - targets: [%q]\n", target)
			if i < len(opt.TargetLabels) && len(opt.TargetLabels[i]) > 0 {
				cfg.WriteString("        labels:\n")
				for k, v := range opt.TargetLabels[i] {
					fmt.Fprintf(&cfg, "          %s: %q\n", k, v)
				}
			}
		}
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	data := opt.Data
	if data == "" {
		data = filepath.Join(dir, "data")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &Server{Addr: addr, log: filepath.Join(dir, "prometheus.log")}
	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prom, "--config.file="+cfgPath, "--storage.tsdb.path="+data, "--storage.tsdb.retention.time=100y",
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
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus not ready after a minute: %v\n%s", err, s.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Log returns the Prometheus's log, for a failure message.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// Sample is one series of an instant vector.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query runs an instant query now.
func (s *Server) Query(q string) ([]Sample, error) { return s.QueryAt(q, time.Time{}) }

// QueryAt runs an instant query at a time (now if zero) and returns its
// vector; any other result type is an error.
func (s *Server) QueryAt(q string, at time.Time) ([]Sample, error) {
	v := url.Values{"query": {q}}
	if !at.IsZero() {
		v.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	resp, err := http.Get("http://" + s.Addr + "/api/v1/query?" + v.Encode())
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
	var out []Sample
	for _, r := range body.Data.Result {
		str, _ := r.Value[1].(string)
		f, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v: %w", q, r.Value[1], err)
		}
		out = append(out, Sample{r.Metric, f})
	}
	return out, nil
}
