package main

// The daemon with --isolate-runs, each backup in a child process of the
// real binary (docs/DESIGN.md §3.6, §8): per-run CPU and RSS with
// overlapping runs, a child killed mid-backup, SIGTERM during a child's
// run, and no secret in a child's arguments or environment.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/meshbackup/backupd/backupd/backend/s3/s3test"
	"github.com/meshbackup/backupd/backupd/results"
	"github.com/meshbackup/backupd/bench/workload"
)

// startDaemonWith is startDaemon with more flags of run and the whole
// environment given.
func startDaemonWith(t *testing.T, env []string, cfg, addr string, flags ...string) *daemonProc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "daemon-*.log")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "--config", cfg, "--web.listen-address", addr, "--log.format", "json"}, flags...)
	cmd := exec.Command(binary, args...)
	cmd.Env = env
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

// finishedRun is a "run finished" or "run failed" line of the daemon's
// log: one per run, with its record's figures.
type finishedRun struct {
	Time     time.Time `json:"time"`
	Msg      string    `json:"msg"`
	Policy   string    `json:"policy"`
	Kind     string    `json:"kind"`
	Run      string    `json:"run"`
	Result   string    `json:"result"`
	Reason   string    `json:"reason"`
	Err      string    `json:"err"`
	Duration float64   `json:"duration_seconds"`
	CPU      float64   `json:"cpu_seconds"`
	MaxRSS   float64   `json:"max_rss_bytes"`
}

func (r finishedRun) start() time.Time {
	return r.Time.Add(-time.Duration(r.Duration * float64(time.Second)))
}

// backupRuns returns the backups the daemon's log reports as ended.
func (d *daemonProc) backupRuns() []finishedRun {
	var out []finishedRun
	sc := bufio.NewScanner(strings.NewReader(d.logs()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r finishedRun
		if json.Unmarshal(sc.Bytes(), &r) != nil || (r.Msg != "run finished" && r.Msg != "run failed") || r.Kind != "backup" {
			continue
		}
		out = append(out, r)
	}
	return out
}

// childrenOf returns the PIDs of pid's child processes running
// "backupd internal backup-run", from /proc.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold anything but the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte("internal\x00backup-run")) {
			out = append(out, p)
		}
	}
	return out
}

// waitChild waits for the daemon's backup child to run and returns its PID.
func (d *daemonProc) waitChild(timeout time.Duration) int {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if kids := childrenOf(d.t, d.cmd.Process.Pid); len(kids) > 0 {
			return kids[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.t.Fatalf("no backup child process appeared; daemon log:\n%s", tail(d.logs(), 3000))
	return 0
}

// flatDir writes n small files into one directory below a new source: a
// backup of it holds the directory's listing and tree in memory, so its
// peak RSS is well above that of a backup with nothing to do.
func flatDir(t *testing.T, n int) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "big")
	dir := filepath.Join(src, "flat")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("entry-with-a-longish-name-%07d.json", i)), fmt.Appendf(nil, `{"k": %d}`, i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// Two overlapping backups (--max-concurrent 2), a large source and a small
// one: each reports its own CPU seconds and peak RSS. A small backup that
// ran while the large one did costs what the same backup costs alone (a
// command-line run, measured by its rusage), well below the large one's
// figures: not the sum of the two, as metering the one process would give.
func TestIsolatedRunsMeterThemselves(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	c := newCLI(t)
	big := flatDir(t, 150_000)
	small := filepath.Join(t.TempDir(), "small")
	if err := os.MkdirAll(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(small, "config.json"), []byte(`{"listener": 15001}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c.init()
	// The small backup alone, as the daemon's will be: it finds its
	// parent and has nothing to store.
	c.backup(small, func(o *backupOptions) { o.Policy = "small" })
	alone := exec.Command(binary, "backup", "--policy", "small", "--quiet", small)
	alone.Env = c.env
	if out, err := alone.CombinedOutput(); err != nil {
		t.Fatalf("small backup alone: %v\n%s", err, out)
	}
	ru := alone.ProcessState.SysUsage().(*syscall.Rusage)
	aloneCPU := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	cfg := fmt.Sprintf(`repositories:
  - {name: local, path: %s, password_env: BACKUPD_PASSWORD}
policies:
  - {name: big, source: %s, repository: local, schedule: "@every 1h", rpo: 2h, rto: 1h, drill: {schedule: "@every 1h"}, verify: {schedule: "@every 1h"}}
  - {name: small, source: %s, repository: local, schedule: "@every 1s", rpo: 2h, rto: 1h, drill: {schedule: "@every 1h"}, verify: {schedule: "@every 1h"}}
`, c.repo, big, small)
	cfgFile := filepath.Join(t.TempDir(), "backupd.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemonWith(t, c.env, cfgFile, freePort(t), "--isolate-runs", "--max-concurrent", "2")
	var bigRun finishedRun
	var during []finishedRun
	deadline := time.Now().Add(3 * time.Minute)
	for {
		during, bigRun = nil, finishedRun{}
		runs := d.backupRuns()
		for _, r := range runs {
			if r.Policy == "big" {
				bigRun = r
			}
		}
		for _, r := range runs {
			if bigRun.Run != "" && r.Policy == "small" && !r.start().Before(bigRun.start()) && !r.Time.After(bigRun.Time) {
				during = append(during, r)
			}
		}
		if bigRun.Run != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the big backup did not end\n%s", tail(d.logs(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	fams := d.scrape()
	d.stop()
	if len(during) == 0 {
		t.Fatalf("no small backup ran within the big one (%s from %s)\n%s", time.Duration(bigRun.Duration*float64(time.Second)), bigRun.start(), tail(d.logs(), 3000))
	}
	for _, r := range append([]finishedRun{bigRun}, during...) {
		if r.Result != "success" || r.CPU <= 0 || r.MaxRSS <= 0 {
			t.Fatalf("backup without its usage: %+v", r)
		}
	}
	t.Logf("big: %.2f s CPU, peak RSS %.0f MiB, %.1f s; small alone: %.3f s CPU", bigRun.CPU, bigRun.MaxRSS/(1<<20), bigRun.Duration, aloneCPU)
	for _, r := range during {
		t.Logf("small during the big one: %.3f s CPU, peak RSS %.0f MiB, %.2f s", r.CPU, r.MaxRSS/(1<<20), r.Duration)
		// Metered with the one process, a small backup would count the
		// big one's memory and the CPU it burnt meanwhile.
		if r.MaxRSS*2 > bigRun.MaxRSS || r.CPU*4 > bigRun.CPU {
			t.Errorf("small backup %s: %.3f s CPU, RSS %.0f MiB; not clearly below the big one's %.2f s, %.0f MiB",
				r.Run, r.CPU, r.MaxRSS/(1<<20), bigRun.CPU, bigRun.MaxRSS/(1<<20))
		}
		// What the big one burnt while the small one ran, at its average
		// rate: all of it would be in a figure metered with the process.
		// Half of it is allowed for the contention of two cores.
		if leak := bigRun.CPU / bigRun.Duration * r.Duration; r.CPU > aloneCPU+leak/2+0.05 {
			t.Errorf("small backup %s: %.3f s CPU, against %.3f s alone; the big one burnt about %.3f s meanwhile, and its CPU is in this figure",
				r.Run, r.CPU, aloneCPU, leak)
		}
	}
	// The metrics carry the same figures.
	if v, _ := value(fams, "backupd_last_backup_max_rss_bytes", map[string]string{"policy": "big"}); v != bigRun.MaxRSS {
		t.Errorf("backupd_last_backup_max_rss_bytes{policy=big} = %v, want the record's %v", v, bigRun.MaxRSS)
	}
	if v, _ := value(fams, "backupd_backup_cpu_seconds_total", map[string]string{"policy": "big"}); v != bigRun.CPU {
		t.Errorf("backupd_backup_cpu_seconds_total{policy=big} = %v, want the record's %v", v, bigRun.CPU)
	}
	for _, name := range []string{"backupd_backup_io_read_bytes_total", "backupd_backup_io_written_bytes_total", "backupd_backup_read_bytes_total"} {
		if v, _ := value(fams, name, map[string]string{"policy": "big"}); v <= 0 {
			t.Errorf("%s{policy=big} = %v", name, v)
		}
	}
	if v, _ := value(fams, "backupd_storage_operations_total", map[string]string{"repository": "local", "op": "save", "result": "ok"}); v < 2 {
		t.Errorf("the children's saves are not in backupd_storage_operations_total: %v", v)
	}
}

// A backup child killed by SIGKILL mid-backup (after its first pack is
// stored): that run is failed with reason crashed, the signal named; the
// daemon stays up and serves its metrics; the next backup succeeds without
// an unlock and adopts the packs the dead child stored; every snapshot
// restores byte-exact and check is clean.
func TestIsolatedBackupChildKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	c := newCLI(t)
	opt := workload.Options{Proxies: 6, ConsulServers: 1, Scale: 0.1, Seed: 21}
	src := genVolume(t, opt)
	c.init()
	before := manifest(t, src)
	first := c.backup(src).SnapshotID
	if err := workload.Mutate(src, opt, 1); err != nil {
		t.Fatal(err)
	}
	after := manifest(t, src)
	cfg := writeDaemonConfig(t, t.TempDir(), src, c.repo)
	start := time.Now()
	d := startDaemonWith(t, append(c.env, "BACKUPD_CHILD_FAULT=after-pack-put"), cfg, freePort(t), "--isolate-runs")
	fams := d.waitFor("the crashed run and a good one after it", 90*time.Second, func(f map[string]*dto.MetricFamily) bool {
		crashed, _ := value(f, "backupd_backup_failures_total", map[string]string{"policy": "mesh", "reason": results.ReasonCrashed})
		runs, _ := value(f, "backupd_backup_runs_total", mesh)
		last, _ := value(f, "backupd_last_backup_success_timestamp_seconds", mesh)
		return crashed == 1 && runs >= 2 && last >= float64(start.Unix())
	})
	if v, _ := value(fams, "backupd_backup_failures_total", nil); v != 1 {
		t.Errorf("%v failures, want the crashed one only\n%s", v, tail(d.logs(), 3000))
	}
	if err := d.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the daemon is gone: %v", err)
	}
	var crashed *finishedRun
	for _, r := range d.backupRuns() {
		if r.Reason == results.ReasonCrashed {
			crashed = &r
			break
		}
	}
	if crashed == nil || !strings.Contains(crashed.Err, "killed by signal SIGKILL") {
		t.Fatalf("crashed run's error does not name the signal: %+v", crashed)
	}
	status := d.get("/api/v1/status")
	if !strings.Contains(status, `"reason": "crashed"`) || !strings.Contains(status, "SIGKILL") {
		t.Errorf("the crashed run is not in the status:\n%s", status)
	}
	logs := d.logs()
	for _, s := range []string{"removed the dead backup child's lock", "reusing packs of an interrupted backup"} {
		if !strings.Contains(logs, s) {
			t.Errorf("log lacks %q:\n%s", s, tail(logs, 3000))
		}
	}
	d.stop()
	if locks, _ := os.ReadDir(filepath.Join(c.repo, "locks")); len(locks) != 0 {
		t.Errorf("%d locks left", len(locks))
	}
	c.check(checkOptions{ReadData: true})
	c.assertRestoreEquals(first[:8], before)
	c.assertRestoreEquals("latest", after)
}

// SIGTERM to the daemon during a child's backup: the child gets SIGTERM and
// stops (its packs indexed, its lock released), the daemon exits 0, and
// the run is recorded as interrupted.
func TestIsolatedBackupSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	c := newCLI(t)
	src := flatDir(t, 30_000)
	c.init()
	cfg := writeDaemonConfig(t, t.TempDir(), src, c.repo)
	d := startDaemonWith(t, c.env, cfg, freePort(t), "--isolate-runs")
	child := d.waitChild(30 * time.Second)
	// Until the child holds its lock: then the stop is the backup's, not
	// the opening's.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if locks, _ := os.ReadDir(filepath.Join(c.repo, "locks")); len(locks) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child never locked\n%s", tail(d.logs(), 3000))
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopped := time.Now()
	d.stop()
	if took := time.Since(stopped); took > 25*time.Second {
		t.Errorf("the stop took %s", took)
	}
	if err := syscall.Kill(child, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the backup child %d outlived the daemon: %v", child, err)
	}
	runs := d.backupRuns()
	if len(runs) != 1 || runs[0].Reason != results.ReasonInterrupted || !strings.Contains(runs[0].Err, "context canceled") {
		t.Fatalf("runs %+v, want one interrupted, stopped by the child itself\n%s", runs, tail(d.logs(), 3000))
	}
	if locks, _ := os.ReadDir(filepath.Join(c.repo, "locks")); len(locks) != 0 {
		t.Errorf("the stopped child left %d locks", len(locks))
	}
	// The record is in the repository: a restarted daemon shows it, and
	// does not count it again.
	d = startDaemonWith(t, c.env, cfg, freePort(t), "--isolate-runs")
	d.waitFor("the repository open", 30*time.Second, func(f map[string]*dto.MetricFamily) bool {
		_, ok := value(f, "backupd_policy_rpo_seconds", mesh)
		return ok
	})
	var interrupted int
	for _, st := range d.status() {
		for _, b := range st.LastBackups {
			if b.Reason == results.ReasonInterrupted {
				interrupted++
			}
		}
	}
	if interrupted != 1 {
		t.Errorf("%d interrupted backups in the status, want 1", interrupted)
	}
	if strings.Contains(d.logs(), "a run was interrupted before this start") {
		t.Error("the stopped run was closed again at the restart")
	}
	d.stop()
	c.check(checkOptions{})
}

// The repository password and the S3 secret key reach a backup child on its
// standard input only: neither is in the child's command line or
// environment. The daemon reads both from files, so that its environment,
// which the child inherits, holds neither.
func TestIsolatedChildGetsNoSecretInArgvOrEnv(t *testing.T) {
	srv := s3test.StartMinIO(t)
	c := s3CLI(t, srv, "mesh")
	pw := "pw-" + randomHex(t)
	c.env = append(c.env, "BACKUPD_PASSWORD="+pw)
	c.mustRun("init")
	id, secret := srv.Credentials()
	dir := t.TempDir()
	files := map[string]string{"password": pw, "key-id": id, "secret": secret}
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src := flatDir(t, 20_000)
	cfg := fmt.Sprintf(`repositories:
  - name: bucket
    path: %s
    password_file: %s
    s3:
      endpoint: %s
      path_style: "true"
      access_key_id_file: %s
      secret_access_key_file: %s
policies:
  - {name: mesh, source: %s, repository: bucket, schedule: "@every 1h", rpo: 2h, rto: 1h, drill: {schedule: "@every 1h"}, verify: {schedule: "@every 1h"}}
`, c.repo, filepath.Join(dir, "password"), srv.Endpoint(), filepath.Join(dir, "key-id"), filepath.Join(dir, "secret"), src)
	cfgFile := filepath.Join(dir, "backupd.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range daemonEnv(srv) {
		if !strings.HasPrefix(kv, "TEST_S3_") && !strings.HasPrefix(kv, "BACKUPD_PASSWORD=") {
			env = append(env, kv)
		}
	}
	for _, kv := range env {
		if strings.Contains(kv, pw) || strings.Contains(kv, secret) {
			t.Fatalf("the daemon's own environment holds a secret: %s", strings.SplitN(kv, "=", 2)[0])
		}
	}
	d := startDaemonWith(t, env, cfgFile, freePort(t), "--isolate-runs")
	child := d.waitChild(60 * time.Second)
	cmdline, err1 := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
	environ, err2 := os.ReadFile(fmt.Sprintf("/proc/%d/environ", child))
	if err1 != nil || err2 != nil || len(cmdline) == 0 || len(environ) == 0 {
		t.Fatalf("read the child's /proc: %v, %v (it ended too soon?)", err1, err2)
	}
	for name, b := range map[string][]byte{"command line": cmdline, "environment": environ} {
		for what, s := range map[string]string{"password": pw, "secret key": secret} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("the %s is in the backup child's %s", what, name)
			}
		}
	}
	// The child raises its oom_score_adj as it starts.
	var adj []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if adj, err1 = os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", child)); err1 != nil || strings.TrimSpace(string(adj)) == childOOMScoreAdj {
			break
		}
	}
	if strings.TrimSpace(string(adj)) != childOOMScoreAdj {
		t.Errorf("the child's oom_score_adj is %q (%v), want %s: the out-of-memory killer would not take it before the daemon", adj, err1, childOOMScoreAdj)
	}
	if !bytes.Contains(environ, []byte("AWS_CONFIG_FILE=/nonexistent")) {
		t.Errorf("the child's environment is not the daemon's: %q", environ)
	}
	d.waitFor("the child's backup", 2*time.Minute, func(f map[string]*dto.MetricFamily) bool {
		ok, _ := value(f, "backupd_backup_runs_total", mesh)
		return ok >= 1
	})
	if runs := d.backupRuns(); len(runs) != 1 || runs[0].Result != "success" {
		t.Fatalf("backup on the bucket through the child: %+v\n%s", runs, tail(d.logs(), 3000))
	}
	d.stop()
	if strings.Contains(d.logs(), pw) || strings.Contains(d.logs(), secret) {
		t.Error("a secret in the daemon's log (the children's relayed lines included)")
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// The child's command is hidden from --help; the flags that turn isolation
// on and off are documented; a request that is not one is refused.
func TestInternalCommandHiddenAndFlagsDocumented(t *testing.T) {
	help := func(args ...string) string {
		var out, errOut bytes.Buffer
		if code := run(t.Context(), append(args, "--help"), environment{}, streams{out: &out, err: &errOut}); code != 0 {
			t.Fatalf("%v --help: exit %d: %s", args, code, errOut.String())
		}
		return out.String()
	}
	if h := help(); strings.Contains(h, "internal") || strings.Contains(h, "backup-run") {
		t.Errorf("backupd --help shows the internal command:\n%s", h)
	}
	for _, tc := range []struct {
		cmd  string
		want []string
	}{
		{"run", []string{"--isolate-runs", "--max-concurrent", `reason "crashed"`}},
		{"agent", []string{"--isolate-runs", "--isolate-runs=false", "child process"}},
	} {
		h := help(tc.cmd)
		for _, w := range tc.want {
			if !strings.Contains(h, w) {
				t.Errorf("backupd %s --help does not say %q", tc.cmd, w)
			}
		}
	}
	// The binary, not run(): the command changes its process (signals,
	// memory limit, OOM score).
	cmd := exec.Command(binary, "internal", "backup-run")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailed || !strings.Contains(errOut.String(), "read the backup request on the standard input") {
		t.Errorf("backup-run of an empty request: %v, %q", err, errOut.String())
	}
	if out.Len() != 0 {
		t.Errorf("backup-run of an empty request reported %q", out.String())
	}
}
