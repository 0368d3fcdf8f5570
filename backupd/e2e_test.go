package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/bench/workload"
	"github.com/meshbackup/backupd/dashboards"
)

// webhook collects Alertmanager notifications.
type webhook struct {
	mu     sync.Mutex
	events []amAlert
}

type amAlert struct {
	Status string            `json:"status"`
	Labels map[string]string `json:"labels"`
	Annot  map[string]string `json:"annotations"`
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var msg struct {
		Alerts []amAlert `json:"alerts"`
	}
	if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.events = append(w.events, msg.Alerts...)
	w.mu.Unlock()
}

// seen reports whether a notification with this status arrived for the
// alert since index from, and returns it.
func (w *webhook) seen(from int, alert, status string) (amAlert, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.events[min(from, len(w.events)):] {
		if e.Labels["alertname"] == alert && e.Status == status {
			return e, true
		}
	}
	return amAlert{}, false
}

func (w *webhook) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.events)
}

func (w *webhook) names() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s []string
	for _, e := range w.events {
		s = append(s, e.Labels["alertname"]+"/"+e.Status)
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

func startProc(t *testing.T, name string, logPath string, args ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	return cmd
}

// promQuery runs an instant query and returns the number of series.
func promQuery(addr, q string) (int, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %q: %s", q, r.Error)
	}
	return len(r.Data.Result), nil
}

func e2eConfig(repo, src, rto string) string {
	return fmt.Sprintf(`repositories:
  - name: local
    path: %s
    password_env: BACKUPD_PASSWORD
policies:
  - name: mesh
    source: %s
    repository: local
    schedule: "@every 2s"
    rpo: 10s
    rto: %s
    drill: {schedule: "@every 2s"}
    verify: {schedule: "@every 2s", read_share: 1}
`, repo, src, rto)
}

// TestE2EAlerts runs backupd, a real Prometheus loading the generated rules
// and a real Alertmanager forwarding to a webhook receiver, injects faults
// one after another, and checks that each alert arrives with the right
// labels and resolves when it should.
func TestE2EAlerts(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	prom := needTool(t, "prometheus")
	am, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		am = needTool(t, "alertmanager")
	}
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 3, ConsulServers: 1, Scale: 0.03, Seed: 12})
	c.init()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "backupd.yaml")
	if err := os.WriteFile(cfgPath, []byte(e2eConfig(c.repo, src, "30s")), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	d := startDaemon(t, c, cfgPath, addr)
	d.waitFor("a good backup and drill", 60*time.Second, func(f map[string]*dto.MetricFamily) bool {
		b, _ := value(f, "backupd_backup_runs_total", mesh)
		w, _ := value(f, "backupd_restore_drills_within_rto_total", mesh)
		return b >= 1 && w >= 1
	})

	// Webhook receiver, Alertmanager, Prometheus.
	hook := &webhook{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: hook}}
	srv.Start()
	t.Cleanup(srv.Close)
	amAddr := freePort(t)
	amCfg := fmt.Sprintf(`route:
  receiver: hook
  group_by: [alertname, policy, repository]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s
        send_resolved: true
`, srv.URL)
	if err := os.WriteFile(filepath.Join(dir, "am.yml"), []byte(amCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, am, filepath.Join(dir, "am.log"), "--config.file="+filepath.Join(dir, "am.yml"),
		"--storage.path="+filepath.Join(dir, "am-data"), "--web.listen-address="+amAddr, "--cluster.listen-address=")
	rules, _ := filepath.Abs("../alerts/backupd.rules.yml")
	promAddr := freePort(t)
	promCfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%s]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['%s']
scrape_configs:
  - job_name: backupd
    static_configs:
      - targets: ['%s']
`, rules, amAddr, addr)
	if err := os.WriteFile(filepath.Join(dir, "prom.yml"), []byte(promCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, prom, filepath.Join(dir, "prom.log"), "--config.file="+filepath.Join(dir, "prom.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "prom-data"), "--web.listen-address="+promAddr)

	logs := func() string {
		var b strings.Builder
		for _, f := range []string{"prom.log", "am.log"} {
			data, _ := os.ReadFile(filepath.Join(dir, f))
			fmt.Fprintf(&b, "--- %s\n%s\n", f, tail(string(data), 1500))
		}
		fmt.Fprintf(&b, "--- backupd\n%s\nnotifications: %s", tail(d.logs(), 2500), hook.names())
		return b.String()
	}
	await := func(from int, alert, status string, timeout time.Duration) amAlert {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for time.Now().Before(deadline) {
			if a, ok := hook.seen(from, alert, status); ok {
				return a
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Fatalf("no %s notification of %s within %v\n%s", status, alert, timeout, logs())
		return amAlert{}
	}
	checkLabels := func(a amAlert, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if a.Labels[k] != v {
				t.Fatalf("%s: label %s=%q, want %q (labels %v)", a.Labels["alertname"], k, a.Labels[k], v, a.Labels)
			}
		}
		if !strings.HasPrefix(a.Annot["runbook_url"], "https://") || a.Annot["summary"] == "" || a.Annot["description"] == "" {
			t.Fatalf("%s: annotations %v", a.Labels["alertname"], a.Annot)
		}
	}

	// The healthy system sends nothing that pages.
	time.Sleep(5 * time.Second)
	if _, ok := hook.seen(0, "BackupdBackupFailing", "firing"); ok {
		t.Fatalf("BackupdBackupFailing while healthy\n%s", logs())
	}

	// Every dashboard panel's query returns data from this Prometheus
	// after the short healthy run (docs/DESIGN.md §6). No panel is legitimately
	// empty without faults: every series, the corruption and failure
	// counters included, is pre-created at 0, so those panels show 0. The
	// fault benchmark's panels read its faults.om, not the daemon
	// (bench/faults TestDashboardQueriesOnPrometheus runs them).
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, _ := promQuery(promAddr, `slo:error_budget_remaining:ratio`)
		m, _ := promQuery(promAddr, `increase(backupd_backup_runs_total[1m]) > 0`)
		if n > 0 && m > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus has no backupd data after a minute\n%s", logs())
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Recording rules of different windows and groups gain their first
	// sample at different evaluations, so a query empty now is asked
	// again until the deadline; only one still empty then fails.
	type panelQuery struct{ name, expr string }
	var pending []panelQuery
	for _, b := range dashboards.Boards() {
		for _, p := range b.Panels {
			for _, q := range p.Queries {
				// The per-PVC table needs the node agent's volume info:
				// backupd/kube/agent TestAgentsOnTwoNodes runs it.
				if strings.Contains(q.Expr, faults.MetricPrefix) || strings.Contains(q.Expr, "backupd_volume_info") {
					continue
				}
				pending = append(pending, panelQuery{b.UID + "/" + p.Title, q.Expr})
			}
		}
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		var empty []panelQuery
		for _, q := range pending {
			n, err := promQuery(promAddr, dashboards.Concrete(q.expr))
			if err != nil {
				t.Fatalf("%s: %v", q.name, err)
			}
			if n == 0 {
				empty = append(empty, q)
			}
		}
		if len(empty) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var lines []string
			for _, q := range empty {
				lines = append(lines, q.name+": "+q.expr)
			}
			t.Fatalf("panel queries without data:\n%s", strings.Join(lines, "\n"))
		}
		pending = empty
		time.Sleep(time.Second)
	}

	// 1. The repository refuses writes: BackupdBackupFailing, then
	// BackupdRPOBreached. Both resolve once it accepts writes again.
	from := hook.count()
	if err := os.Rename(c.repo, c.repo+".off"); err != nil {
		t.Fatal(err)
	}
	a := await(from, "BackupdBackupFailing", "firing", 90*time.Second)
	checkLabels(a, map[string]string{"severity": "critical", "policy": "mesh", "job": "backupd"})
	a = await(from, "BackupdRPOBreached", "firing", 90*time.Second)
	checkLabels(a, map[string]string{"severity": "critical", "policy": "mesh"})
	if err := os.Rename(c.repo+".off", c.repo); err != nil {
		t.Fatal(err)
	}
	await(from, "BackupdBackupFailing", "resolved", 90*time.Second)
	await(from, "BackupdRPOBreached", "resolved", 90*time.Second)

	// 2. A drill that cannot meet its RTO: BackupdRestoreDrillFailing, resolved
	// by the next drill within the RTO.
	from = hook.count()
	if err := os.WriteFile(cfgPath, []byte(e2eConfig(c.repo, src, "1ms")), 0o600); err != nil {
		t.Fatal(err)
	}
	a = await(from, "BackupdRestoreDrillFailing", "firing", 90*time.Second)
	checkLabels(a, map[string]string{"severity": "critical", "policy": "mesh"})
	if err := os.WriteFile(cfgPath, []byte(e2eConfig(c.repo, src, "30s")), 0o600); err != nil {
		t.Fatal(err)
	}
	await(from, "BackupdRestoreDrillFailing", "resolved", 90*time.Second)

	// 3. Bit flips in a pack: BackupdRepositoryCorruption after the next verify
	// run. It does not resolve: the data stays damaged.
	from = hook.count()
	packs, _ := filepath.Glob(filepath.Join(c.repo, "data", "*", "*"))
	sort.Slice(packs, func(i, j int) bool {
		a, _ := os.Stat(packs[i])
		b, _ := os.Stat(packs[j])
		return a.Size() > b.Size()
	})
	b, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x40
	if err := os.WriteFile(packs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	a = await(from, "BackupdRepositoryCorruption", "firing", 90*time.Second)
	checkLabels(a, map[string]string{"severity": "critical", "repository": "local"})
	time.Sleep(5 * time.Second)
	if _, ok := hook.seen(from, "BackupdRepositoryCorruption", "resolved"); ok {
		t.Fatal("BackupdRepositoryCorruption resolved while the repository is still damaged")
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
}
