package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/meshbackup/backupd/bench/workload"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type daemonProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	log  *os.File
}

// writeDaemonConfig writes a config with second-level schedules.
func writeDaemonConfig(t *testing.T, dir, src, repo string) string {
	t.Helper()
	cfg := fmt.Sprintf(`repositories:
  - name: local
    path: %s
    password_env: BACKUPD_PASSWORD
policies:
  - name: mesh
    source: %s
    repository: local
    schedule: "@every 2s"
    rpo: 30s
    rto: 30s
    retention: {keep_last: 5}
    drill: {schedule: "@every 3s"}
    verify: {schedule: "@every 3s", read_share: 0.5}
scheduler:
  prune_grace: 1m
`, repo, src)
	p := filepath.Join(dir, "backupd.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startDaemon(t *testing.T, c *cli, cfg, addr string, env ...string) *daemonProc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "daemon-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "run", "--config", cfg, "--web.listen-address", addr, "--log.format", "json")
	cmd.Env = append(append([]string(nil), c.env...), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{t: t, cmd: cmd, addr: addr, log: logf}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			_ = d.cmd.Wait()
		}
	})
	return d
}

func (d *daemonProc) logs() string {
	b, _ := os.ReadFile(d.log.Name())
	return string(b)
}

func (d *daemonProc) scrape() map[string]*dto.MetricFamily {
	d.t.Helper()
	resp, err := http.Get("http://" + d.addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		d.t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

// value returns the sum of the series of name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
	for _, m := range f.Metric {
		match := true
		for k, v := range want {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, found
}

// waitFor polls the metrics until cond holds.
func (d *daemonProc) waitFor(what string, timeout time.Duration, cond func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if f := d.scrape(); f != nil && cond(f) {
			return f
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.t.Fatalf("timed out waiting for %s; daemon log:\n%s", what, tail(d.logs(), 3000))
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

var mesh = map[string]string{"policy": "mesh"}

func TestDaemonCyclesSurviveKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	c := newCLI(t)
	opt := workload.Options{Proxies: 6, ConsulServers: 1, Scale: 0.1, Seed: 3}
	src := genVolume(t, opt)
	c.init()
	cfg := writeDaemonConfig(t, t.TempDir(), src, c.repo)
	addr := freePort(t)
	d := startDaemon(t, c, cfg, addr)
	fams := d.waitFor("two backups, a drill and a verify", 60*time.Second, func(f map[string]*dto.MetricFamily) bool {
		b, _ := value(f, "backupd_backup_runs_total", map[string]string{"policy": "mesh", "kind": "scheduled"})
		dr, _ := value(f, "backupd_restore_drills_within_rto_total", mesh)
		v, _ := value(f, "backupd_verify_runs_total", map[string]string{"repository": "local"})
		return b >= 2 && dr >= 1 && v >= 1
	})
	lastOK, _ := value(fams, "backupd_last_backup_success_timestamp_seconds", mesh)
	if lastOK < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("last success timestamp %v is not recent", lastOK)
	}
	for _, name := range []string{"backupd_last_restore_drill_success_timestamp_seconds", "backupd_backup_cpu_seconds_total", "backupd_last_backup_max_rss_bytes", "backupd_repository_size_bytes", "backupd_policy_rpo_seconds"} {
		if v, ok := value(fams, name, nil); !ok || v <= 0 {
			t.Fatalf("%s = %v (present %v)", name, v, ok)
		}
	}
	if v, _ := value(fams, "backupd_backup_failures_total", nil); v != 0 {
		t.Fatalf("failures before the kill: %v\n%s", v, tail(d.logs(), 2000))
	}
	// Status API and landing page.
	resp, err := http.Get("http://" + addr + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"policy": "mesh"`) || !strings.Contains(string(body), `"next_backup"`) {
		t.Fatalf("status: %s", body)
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM: daemon did not exit 0: %v\n%s", err, tail(d.logs(), 2000))
	}
	// Restart with a fault point armed: the next backup dies mid-way
	// (after its first pack is stored).
	if err := workload.Mutate(src, opt, 1); err != nil {
		t.Fatal(err)
	}
	d = startDaemon(t, c, cfg, addr, "BACKUPD_FAULT=after-pack-put")
	err = d.cmd.Wait()
	ws, _ := d.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if err == nil || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("daemon was not killed mid-backup: %v\n%s", err, tail(d.logs(), 2000))
	}
	// Restart for good.
	d = startDaemon(t, c, cfg, addr)
	fams = d.waitFor("the interrupted run counted and a new backup", 60*time.Second, func(f map[string]*dto.MetricFamily) bool {
		i, _ := value(f, "backupd_backup_failures_total", map[string]string{"policy": "mesh", "reason": "interrupted"})
		b, _ := value(f, "backupd_backup_runs_total", map[string]string{"policy": "mesh", "kind": "scheduled"})
		return i == 1 && b >= 2 // the interrupted one plus a new good one
	})
	if v, _ := value(fams, "backupd_last_backup_success_timestamp_seconds", mesh); v < lastOK {
		t.Fatalf("last success went back from %v to %v across the restart", lastOK, v)
	}
	if v, _ := value(fams, "backupd_last_restore_drill_success_timestamp_seconds", mesh); v == 0 {
		t.Fatal("last drill success lost across the restart")
	}
	c.check(checkOptions{ReadData: true})
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	// Every run logged one summary line with policy, result and duration.
	sc := bufio.NewScanner(strings.NewReader(d.logs()))
	found := false
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, `"msg":"run finished"`) && strings.Contains(l, `"policy":"mesh"`) && strings.Contains(l, `"duration_seconds"`) && strings.Contains(l, `"bytes_read"`) {
			found = true
		}
		if strings.Contains(l, "correct horse") {
			t.Fatal("password in the logs")
		}
	}
	if !found {
		t.Fatal("no run summary line in the logs")
	}
}

func TestDaemonReloadRefusesBadConfig(t *testing.T) {
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.02})
	c.init()
	dir := t.TempDir()
	cfg := writeDaemonConfig(t, dir, src, c.repo)
	addr := freePort(t)
	d := startDaemon(t, c, cfg, addr)
	d.waitFor("a backup", 30*time.Second, func(f map[string]*dto.MetricFamily) bool {
		b, _ := value(f, "backupd_backup_runs_total", mesh)
		return b >= 1
	})
	good, _ := os.ReadFile(cfg)
	_ = os.WriteFile(cfg, []byte(strings.Replace(string(good), "rpo: 30s", "rpo: soon", 1)), 0o600)
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.logs(), "config not reloaded") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(d.logs(), "config not reloaded") || !strings.Contains(d.logs(), "policies[0].rpo") {
		t.Fatalf("bad config not reported:\n%s", tail(d.logs(), 2000))
	}
	// The old config still runs; a good new one (a second policy) is
	// picked up from the file change.
	second := strings.Replace(string(good), "policies:\n", "policies:\n  - name: extra\n    source: "+src+"\n    repository: local\n    schedule: \"@every 2s\"\n    rpo: 30s\n    rto: 30s\n    drill: {schedule: \"@every 1h\"}\n    verify: {schedule: \"@every 1h\"}\n", 1)
	_ = os.WriteFile(cfg, []byte(second), 0o600)
	d.waitFor("the new policy's series", 30*time.Second, func(f map[string]*dto.MetricFamily) bool {
		_, ok := value(f, "backupd_policy_rpo_seconds", map[string]string{"policy": "extra"})
		b, _ := value(f, "backupd_backup_runs_total", map[string]string{"policy": "mesh"})
		return ok && b >= 2
	})
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigCheckCommand(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	good := writeDaemonConfig(t, dir, dir, filepath.Join(dir, "repo"))
	if out := call(c, runConfigCheck, configCheckOptions{}, false, good); !strings.Contains(out, "ok: 1 repositories, 1 policies") {
		t.Fatal(out)
	}
	b, _ := os.ReadFile(good)
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte(strings.Replace(string(b), "schedule: \"@every 2s\"", "schedul: \"@every 2s\"", 1)), 0o600)
	g, _, _ := c.globals(false)
	err := runConfigCheck(t.Context(), configCheckOptions{}, g, []string{bad})
	if code := exitCode(err); code != exitUsage || err == nil || !strings.Contains(err.Error(), "bad.yaml:9: policies[0].schedul: unknown key") {
		t.Fatalf("exit %d: %v", code, err)
	}
}

// SIGTERM during a backup: the daemon stops within a bound, exits 0, the
// interrupted run is recorded as failed, the repository checks clean, and
// runs missed while it was down are counted at the next start.
func TestDaemonSIGTERMDuringBackupAndMissedRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 40, ConsulServers: 2, Scale: 0.6, Seed: 8})
	c.init()
	cfg := writeDaemonConfig(t, t.TempDir(), src, c.repo)
	addr := freePort(t)
	d := startDaemon(t, c, cfg, addr)
	deadline := time.Now().Add(60 * time.Second)
	for {
		f := d.scrape()
		if v, _ := value(f, "backupd_backup_in_progress", mesh); v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw a backup in progress\n%s", tail(d.logs(), 2000))
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, tail(d.logs(), 2000))
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("SIGTERM took %v", took)
	}
	c.check(checkOptions{})
	time.Sleep(4500 * time.Millisecond) // two activations of "@every 2s" pass while down
	d = startDaemon(t, c, cfg, addr)
	d.waitFor("the missed runs counted", 60*time.Second, func(f map[string]*dto.MetricFamily) bool {
		m, _ := value(f, "backupd_scheduler_missed_runs_total", mesh)
		return m >= 1
	})
	// The stopped run was recorded (by the process that stopped) as failed,
	// reason interrupted; the restarted daemon shows it.
	resp, err := http.Get("http://" + addr + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"reason": "interrupted"`) {
		t.Fatalf("interrupted run not in the status:\n%s", body)
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	_ = d.cmd.Wait()
}
