package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/meshbackup/backupd/backupd/budget"
	"github.com/meshbackup/backupd/bench/workload"
)

// ownPriority is the nice value and the I/O priority in effect of this
// test process (it may itself run under nice), as a daemon started
// with priority off keeps them.
func ownPriority(t *testing.T) (nice int, io string) {
	t.Helper()
	tid := syscall.Gettid()
	nice, err := budget.Nice(tid)
	if err != nil {
		t.Fatal(err)
	}
	return nice, effectiveIO(t, tid, nice)
}

// effectiveIO is the I/O priority a thread gets: class "none" is
// best-effort at (nice + 20) / 5.
func effectiveIO(t *testing.T, tid, nice int) string {
	t.Helper()
	class, level, err := budget.IOPriority(tid)
	if err != nil {
		t.Fatal(err)
	}
	switch name := budget.IOClassName(class); name {
	case "none":
		return fmt.Sprintf("best-effort:%d", (nice+20)/5)
	case "best-effort":
		return fmt.Sprintf("best-effort:%d", level)
	default:
		return name
	}
}

// threadNice reads a thread's nice value from /proc/PID/task/TID/stat
// (field 19).
func threadNice(t *testing.T, pid, tid int) (int, bool) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return 0, false // exited meanwhile
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	n, err := strconv.Atoi(f[19-3])
	if err != nil {
		t.Fatalf("stat of thread %d: %q", tid, s)
	}
	return n, true
}

// TestDaemonRunsAtLowPriority starts the daemon with the default priority,
// an explicit one (and a budget) and "off", lets it back up once (so the
// threads the backup started exist), and reads the nice value and I/O
// priority of every one of its threads from outside.
func TestDaemonRunsAtLowPriority(t *testing.T) {
	if testing.Short() {
		t.Skip("starts daemons")
	}
	ownNice, ownIO := ownPriority(t)
	ownCPU, err := budget.CPUPolicy(syscall.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, priority, budget string
		nice                   int
		io, cpu                string
	}{
		{"default", "", "", max(ownNice, 10), "best-effort:7", ownCPU},
		{"explicit", "  priority: {nice: 17, io_class: idle, cpu_class: idle}\n", "    budget: {read_rate: 8MiB/s, cpu: 0.5}\n", max(ownNice, 17), "idle", "idle"},
		{"off", "  priority: off\n", "", ownNice, ownIO, ownCPU},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "default" && ownIO == "idle" {
				t.Skip("the test runs at I/O class idle: best-effort 7 would be a raise, which backupd refuses")
			}
			c := newCLI(t)
			src := genVolume(t, workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.02, Seed: 5})
			c.init()
			cfg := writeDaemonConfig(t, t.TempDir(), src, c.repo)
			text, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			text = []byte(strings.Replace(string(text), "    rto: 30s\n", "    rto: 30s\n"+tc.budget, 1) + tc.priority)
			if err := os.WriteFile(cfg, text, 0o600); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, c, cfg, freePort(t))
			d.waitFor("a good backup", 60*time.Second, func(f map[string]*dto.MetricFamily) bool {
				ok, _ := value(f, "backupd_last_backup_success_timestamp_seconds", mesh)
				return ok > 0
			})
			pid := d.cmd.Process.Pid
			tids, err := budget.Threads(pid)
			if err != nil {
				t.Fatal(err)
			}
			seen := 0
			for _, tid := range tids {
				nice, ok := threadNice(t, pid, tid)
				if !ok {
					continue
				}
				seen++
				cpu, err := budget.CPUPolicy(tid)
				if err != nil {
					continue // exited since
				}
				if io := effectiveIO(t, tid, nice); nice != tc.nice || io != tc.io || cpu != tc.cpu {
					t.Errorf("thread %d of %d: nice %d, I/O %s, CPU %s; want nice %d, I/O %s, CPU %s", tid, len(tids), nice, io, cpu, tc.nice, tc.io, tc.cpu)
				}
			}
			if seen < 4 {
				t.Fatalf("only %d threads seen", seen)
			}
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			if err := d.cmd.Wait(); err != nil {
				t.Fatalf("SIGTERM: %v\n%s", err, tail(d.logs(), 2000))
			}
		})
	}
}

// budgetSource writes a source that a backup needs about 0.8 CPU-seconds
// for at full speed on the test machine: random bytes (incompressible)
// and an access log (compressible), plus a small mesh volume set.
func budgetSource(t *testing.T) string {
	t.Helper()
	src := genVolume(t, workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.05, Seed: 9})
	rng := rand.New(rand.NewPCG(7, 8))
	b := make([]byte, 96<<20)
	for i := 0; i+8 <= len(b); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	if err := os.WriteFile(filepath.Join(src, "blob.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	for i := 0; log.Len() < 48<<20; i++ {
		fmt.Fprintf(&log, "[2026-12-02T10:%02d:%02d.%03dZ] \"GET /api/v1/items/%d HTTP/1.1\" 200 - %d %d %d \"curl/8.%d\"\n",
			i/60000%60, i/1000%60, i%1000, rng.IntN(1e6), rng.IntN(900), rng.IntN(90000), rng.IntN(300), rng.IntN(9))
	}
	if err := os.WriteFile(filepath.Join(src, "big-access.log"), []byte(log.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

// TestBackupWithinBudget backs up with --read-rate and with --cpu-limit:
// with the rate, the backup takes at least the bytes it read divided by
// the rate (a lower bound only); with the CPU limit, the process uses at
// most about that many cores over the run (0.25 asked, 0.35 allowed: the
// key derivation before the backup is not throttled); both restore
// byte-exact.
func TestBackupWithinBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("several seconds per backup")
	}
	src := budgetSource(t)
	want := manifest(t, src)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"read rate", []string{"--read-rate", "40MiB/s"}},
		{"cpu", []string{"--cpu-limit", "0.25"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t)
			c.init()
			cmd := exec.Command(binary, append([]string{"backup", "--policy", "mesh", "--json"}, append(tc.args, src)...)...)
			cmd.Env = c.env
			start := time.Now()
			out, err := cmd.Output()
			wall := time.Since(start)
			if err != nil {
				t.Fatalf("backup: %v\n%s", err, out)
			}
			var s summary
			if err := json.Unmarshal(out, &s); err != nil {
				t.Fatal(err)
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			t.Logf("%s: read %d bytes in %s, %s CPU (%.3f cores)", tc.name, s.BytesRead, wall, cpu, cpu.Seconds()/wall.Seconds())
			switch tc.name {
			case "read rate":
				if min := time.Duration(float64(s.BytesRead) / (40 << 20) * float64(time.Second)); wall < min {
					t.Errorf("read %d bytes in %s at 40 MiB/s: want at least %s", s.BytesRead, wall, min)
				}
			case "cpu":
				if wall < 2*time.Second {
					t.Fatalf("the backup took %s: too short to judge a CPU limit of 0.25 (%s CPU)", wall, cpu)
				}
				if got := cpu.Seconds() / wall.Seconds(); got > 0.35 {
					t.Errorf("%s CPU in %s: %.3f cores, want at most 0.35 (limit 0.25)", cpu, wall, got)
				}
			}
			c.assertRestoreEquals(s.SnapshotID, want)
		})
	}
}

// TestBudgetAndPriorityValuesRefused: bad values of the impact flags and
// config keys exit 2 naming the flag or key.
func TestBudgetAndPriorityValuesRefused(t *testing.T) {
	c := newCLI(t)
	src := t.TempDir()
	dir := t.TempDir()
	cfg := writeDaemonConfig(t, dir, src, c.repo)
	good, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, from, to string) string {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(strings.Replace(string(good), from, to, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"read rate without unit of time", []string{"backup", "--policy", "mesh", "--read-rate", "50MiB", src}, `--read-rate: "50MiB" is not a rate such as 50MiB/s`},
		{"cpu limit negative", []string{"backup", "--policy", "mesh", "--cpu-limit", "-1", src}, "--cpu-limit -1: want a number of cores"},
		{"agent io class", []string{"agent", "--node-name", "n", "--namespace", "ns", "--io-class", "realtime"}, `--io-class: "realtime" is not an I/O class`},
		{"agent nice", []string{"agent", "--node-name", "n", "--namespace", "ns", "--nice", "-3"}, "--nice -3: want 0 (unchanged) to 19"},
		{"config nice", []string{"run", "--config", write("nice", "  prune_grace: 1m", "  prune_grace: 1m\n  priority: {nice: 40}")}, `scheduler.priority.nice: expected a nice value from 0 (unchanged) to 19 (lowest priority), got "40"`},
		{"config read rate", []string{"run", "--config", write("rate", "    rto: 30s", "    rto: 30s\n    budget: {read_rate: lots}")}, `policies[0].budget.read_rate: expected a positive rate of bytes per second`},
		{"config check cpu", []string{"config", "check", write("cpu", "    rto: 30s", "    rto: 30s\n    budget: {cpu: -0.5}")}, `policies[0].budget.cpu: expected a number of cores`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := c.run(nil, tc.args...)
			if code != exitUsage || !strings.Contains(errOut, tc.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, exitUsage, errOut, tc.msg)
			}
		})
	}
}
