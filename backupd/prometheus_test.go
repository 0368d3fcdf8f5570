package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/meshbackup/backupd/bench/workload"
)

// needTool finds a binary that `make test` installs (scripts/install-tools.sh).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run ./scripts/install-tools.sh prometheus (make test does)", name)
	}
	return p
}

// A real Prometheus scrapes the daemon; PromQL over the scraped data returns
// the policy's series. promtool accepts the exposition.
func TestRealPrometheusScrapesDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	prom, promtool := needTool(t, "prometheus"), needTool(t, "promtool")
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 3, ConsulServers: 1, Scale: 0.03})
	c.init()
	cfg := writeDaemonConfig(t, t.TempDir(), src, c.repo)
	addr := freePort(t)
	d := startDaemon(t, c, cfg, addr)
	d.waitFor("a backup and a drill", 60*time.Second, func(f map[string]*dto.MetricFamily) bool {
		b, _ := value(f, "backupd_backup_runs_total", mesh)
		dr, _ := value(f, "backupd_restore_runs_total", mesh)
		return b >= 1 && dr >= 1
	})

	// promtool check metrics on the exposition.
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	chk := exec.Command(promtool, "check", "metrics")
	chk.Stdin = strings.NewReader(string(body))
	if out, err := chk.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}

	dir := t.TempDir()
	promAddr := freePort(t)
	pcfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: backupd\n    static_configs:\n      - targets: ['%s']\n", addr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(pcfg), 0o600); err != nil {
		t.Fatal(err)
	}
	plog, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr)
	cmd.Stdout, cmd.Stderr = plog, plog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	query := func(q string) ([]map[string]any, error) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var r struct {
			Status string `json:"status"`
			Data   struct {
				Result []map[string]any `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return nil, err
		}
		return r.Data.Result, nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := query(`sum by (policy) (backupd_backup_runs_total{job="backupd"}) > 0`)
		if err == nil && len(res) == 1 {
			m, _ := res[0]["metric"].(map[string]any)
			if m["policy"] != "mesh" {
				t.Fatalf("unexpected series %v", res)
			}
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(plog.Name())
			t.Fatalf("Prometheus never saw the policy's runs (last err %v, result %v)\n%s", err, res, tail(string(b), 2000))
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Age of the newest good snapshot against the RPO, as the SLO rules
	// will compute it.
	res, err := query(`time() - backupd_last_backup_success_timestamp_seconds <= on(policy) backupd_policy_rpo_seconds`)
	if err != nil || len(res) != 1 {
		t.Fatalf("RPO query: %v %v", err, res)
	}
	res, err = query(`up{job="backupd"}`)
	if err != nil || len(res) != 1 {
		t.Fatalf("up: %v %v", err, res)
	}
}
