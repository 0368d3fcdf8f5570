package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/meshbackup/backupd/bench/workload"
	"github.com/meshbackup/backupd/internal/units"
)

// Results is everything one bench run measured; it is written as JSON.
type Results struct {
	Date        time.Time    `json:"date"`
	Environment Environment  `json:"environment"`
	Workload    WorkloadInfo `json:"workload"`
	// SmallChange is the change before the small-change backup (about
	// cfg.changePct percent: idle proxies, idle Consul servers); Change is
	// one simulated minute of the whole mesh, before the next backup.
	SmallChange ChangeInfo    `json:"small_change"`
	Change      ChangeInfo    `json:"change"`
	Tools       []*ToolResult `json:"tools"`
	Ratios      []Ratio       `json:"ratios,omitempty"`
	// S3 describes the object store of an S3-mode run (-s3); nil in
	// local mode. Skipped lists the tools left out and why.
	S3      *S3Info   `json:"s3,omitempty"`
	Skipped []Skipped `json:"skipped,omitempty"`
}

// Skipped is a tool the run left out.
type Skipped struct {
	Tool   string `json:"tool"`
	Reason string `json:"reason"`
}

// Environment describes the machine the bench ran on.
type Environment struct {
	Hostname    string `json:"hostname"`
	Kernel      string `json:"kernel"`
	CPUModel    string `json:"cpu_model"`
	CPUs        int    `json:"cpus"`
	MemTotalMiB int64  `json:"mem_total_mib"`
	GoVersion   string `json:"go_version"`
}

// WorkloadInfo describes the generated source set.
type WorkloadInfo struct {
	Options workload.Options `json:"options"`
	Source  string           `json:"source"`
	Reused  bool             `json:"reused_cached_set"`
	TreeStats
}

// ChangeInfo describes the change applied before a change backup.
type ChangeInfo struct {
	TargetPercent float64 `json:"target_percent,omitempty"`
	Steps         int     `json:"mutate_steps"`
	// ActiveProxies is how many proxies were active (0: all, and every
	// Consul server too).
	ActiveProxies int `json:"active_proxies,omitempty"`
	ChangeStats
	Files FileChanges `json:"files"`
}

// ToolResult is one tool's row.
type ToolResult struct {
	Name         string       `json:"name"`
	Version      string       `json:"version"`
	Binary       string       `json:"binary"`
	BinaryBLAKE3 string       `json:"binary_blake3"`
	Init         *Measurement `json:"init,omitempty"`
	FirstBackup  *Measurement `json:"first_backup,omitempty"`
	// NoChange is the median (by wall time) of the no-change backups,
	// whose wall times are NoChangeWalls in the order they ran.
	NoChange      *Measurement `json:"no_change_backup,omitempty"`
	NoChangeWalls []float64    `json:"no_change_walls_seconds,omitempty"`
	// NoChangeTraffic is the S3 traffic of each no-change backup, in
	// order (S3 mode).
	NoChangeTraffic []*Traffic `json:"no_change_s3_traffic,omitempty"`
	// SmallChange is the median of the small-change backups, each made
	// from the same state (SmallChangeWalls in the order they ran).
	SmallChange      *Measurement `json:"small_change_backup,omitempty"`
	SmallChangeWalls []float64    `json:"small_change_walls_seconds,omitempty"`
	// SmallChangeTraffic is the S3 traffic of each small-change backup.
	SmallChangeTraffic []*Traffic   `json:"small_change_s3_traffic,omitempty"`
	Change             *Measurement `json:"change_backup,omitempty"`
	Restore            *Measurement `json:"restore,omitempty"`
	// RestoreVerified is true when the restored tree's manifest equals the
	// source's (sockets aside: no tool restores them).
	RestoreVerified    bool     `json:"restore_verified"`
	RestoreDifferences int      `json:"restore_differences"`
	RestoreDiff        []string `json:"restore_diff,omitempty"` // the first few
	RepoBytes          int64    `json:"repo_bytes"`
	// PeakRSSKiB is the highest peak RSS of the measured runs.
	PeakRSSKiB int64    `json:"peak_rss_kib"`
	Errors     []string `json:"errors,omitempty"`
}

// restoreOK reports whether the restore ran and was verified.
func (t *ToolResult) restoreOK() bool { return t.Restore.OK() && t.RestoreVerified }

// runs returns the measured runs (not init) that took place.
func (t *ToolResult) runs() []*Measurement {
	var ms []*Measurement
	for _, m := range []*Measurement{t.FirstBackup, t.NoChange, t.SmallChange, t.Change, t.Restore} {
		if m != nil {
			ms = append(ms, m)
		}
	}
	return ms
}

// tool is a driver with its result row.
type tool struct {
	d   driver
	res *ToolResult
	s3  *s3Run // nil in local mode
}

// live reports whether the tool may go on to its next phase: every earlier
// run succeeded.
func (t *tool) live() bool { return len(t.res.Errors) == 0 }

// maxRestoreDiff is how many restore differences are kept per tool.
const maxRestoreDiff = 20

func runBench(ctx context.Context, cfg *config, log *logger) (*Results, error) {
	want := cfg.tools
	var skipped []Skipped
	if cfg.s3 && want != nil {
		// A tool without an S3 backend need not be installed to be skipped.
		if want, skipped = skipForS3(want); len(want) == 0 {
			return nil, errors.New("-s3: no tool with an S3 backend selected (backupd, restic, kopia)")
		}
	}
	bins, order, err := selectTools(want, cfg.backupd)
	if err != nil {
		return nil, err
	}
	res := &Results{Date: time.Now().UTC(), Environment: environment(), Skipped: skipped}
	if cfg.s3 {
		if order, res.Skipped = skipForS3(order); len(order) == 0 {
			return nil, errors.New("-s3: no tool with an S3 backend found (backupd, restic, kopia)")
		}
	}
	log.printf("tools: %s", strings.Join(order, ", "))
	for _, sk := range res.Skipped {
		log.printf("skipping %s: %s", sk.Tool, sk.Reason)
	}
	opt := workload.Options{Proxies: cfg.proxies, ConsulServers: cfg.consul, Scale: cfg.scale, Seed: cfg.seed}
	if err := os.MkdirAll(cfg.work, 0o755); err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	pristine, pm, reused, err := prepareSource(cfg.work, opt, log)
	if err != nil {
		return nil, err
	}

	// Every run starts from a fresh copy of the pristine set (the change
	// phase mutates it) and fresh repositories.
	runDir := filepath.Join(cfg.work, "run")
	if err := os.RemoveAll(runDir); err != nil {
		return nil, fmt.Errorf("remove the previous run: %w", err)
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	src := filepath.Join(runDir, "src")
	log.printf("copying the source set to %s", src)
	if err := copyTree(ctx, pristine, src); err != nil {
		return nil, err
	}
	m0, err := workload.Manifest(src)
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", src, err)
	}
	if d := workload.Diff(pm, m0, false); len(d) > 0 {
		return nil, fmt.Errorf("the copy %s differs from %s: %s", src, pristine, strings.Join(d[:min(len(d), 5)], "; "))
	}
	res.Workload = WorkloadInfo{Options: opt, Source: src, Reused: reused, TreeStats: treeStats(m0)}
	ws := res.Workload.TreeStats
	log.printf("source: %d files (%s), %d dirs, %d symlinks, %d sockets", ws.Files, units.Bytes(ws.Bytes), ws.Dirs, ws.Symlinks, ws.Sockets)

	var store *s3Run
	if cfg.s3 {
		if store, err = startS3(ctx, filepath.Join(runDir, "minio"), order, log); err != nil {
			return nil, err
		}
		defer store.close(log)
		res.S3 = store.info()
	}
	tools, err := setupTools(ctx, order, bins, runDir, store, log)
	if err != nil {
		return nil, err
	}
	syscall.Sync()
	if err := phase(ctx, log, tools, "init", func(t *tool) invocation { return t.d.initCmd() },
		func(r *ToolResult, m *Measurement) { r.Init = m }); err != nil {
		return nil, err
	}
	if err := phase(ctx, log, tools, "first backup", func(t *tool) invocation { return t.d.backupCmd(src, 1) },
		func(r *ToolResult, m *Measurement) { r.FirstBackup = m }); err != nil {
		return nil, err
	}
	// A no-change backup takes well under a second: one run is mostly
	// noise on a shared machine, so it runs cfg.repeat times (the tools
	// taking turns) and the median counts.
	seq := 1
	noChange := map[*ToolResult][]*Measurement{}
	for i := range cfg.repeat {
		seq++
		label := "no-change backup"
		if cfg.repeat > 1 {
			label = fmt.Sprintf("no-change backup %d/%d", i+1, cfg.repeat)
		}
		if err := phase(ctx, log, tools, label, func(t *tool) invocation { return t.d.backupCmd(src, seq) },
			func(r *ToolResult, m *Measurement) { noChange[r] = append(noChange[r], m) }); err != nil {
			return nil, err
		}
	}
	for _, t := range tools {
		t.res.NoChange, t.res.NoChangeWalls = median(noChange[t.res])
		t.res.NoChangeTraffic = trafficOf(noChange[t.res])
	}

	m1, small, err := mutateSmall(ctx, src, opt, cfg, m0, log)
	if err != nil {
		return nil, err
	}
	res.SmallChange = small
	syscall.Sync()
	seq++
	if err := smallChangePhase(ctx, log, tools, cfg.repeatChange, small.Percent, func(t *tool) invocation { return t.d.backupCmd(src, seq) }); err != nil {
		return nil, err
	}
	m2, change, err := mutateMinute(src, opt, m1, log)
	if err != nil {
		return nil, err
	}
	res.Change = change
	syscall.Sync()
	label := fmt.Sprintf("minute (%.2f%%) change backup", change.Percent)
	seq++
	if err := phase(ctx, log, tools, label, func(t *tool) invocation { return t.d.backupCmd(src, seq) },
		func(r *ToolResult, m *Measurement) { r.Change = m }); err != nil {
		return nil, err
	}
	for _, t := range tools {
		if t.s3 != nil {
			t.res.RepoBytes, err = bucketSize(ctx, t.s3.client, t.d.bucket())
		} else {
			t.res.RepoBytes, err = dirSize(t.d.repoDir())
		}
		if err != nil {
			return nil, err
		}
	}

	for _, t := range tools {
		if t.live() {
			if err := restore(ctx, log, t, src, filepath.Join(runDir, "restore-"+t.res.Name), seq, m2, cfg.keep); err != nil {
				return nil, err
			}
		}
	}

	for _, t := range tools {
		for _, m := range t.res.runs() {
			t.res.PeakRSSKiB = max(t.res.PeakRSSKiB, m.MaxRSSKiB)
		}
		res.Tools = append(res.Tools, t.res)
	}
	res.Ratios = computeRatios(res.Tools, cfg.s3)
	return res, nil
}

// setupTools creates the drivers of the tools in order, each with its home
// under runDir, and records their versions. bin/backupd is rebuilt by
// whoever works on the tree, so backupd runs from a private copy made here.
func setupTools(ctx context.Context, order []string, bins map[string]string, runDir string, store *s3Run, log *logger) ([]*tool, error) {
	if b, ok := bins["backupd"]; ok {
		cp := filepath.Join(runDir, "bin", "backupd")
		if err := os.MkdirAll(filepath.Dir(cp), 0o755); err != nil {
			return nil, fmt.Errorf("copy backupd: %w", err)
		}
		if err := copyFile(b, cp, 0o755); err != nil {
			return nil, fmt.Errorf("copy backupd: %w", err)
		}
		bins["backupd"] = cp
	}
	var tools []*tool
	for _, name := range order {
		var target *s3Target
		if store != nil {
			target = store.target(name)
		}
		d, err := newDriver(name, bins[name], filepath.Join(runDir, name), target)
		if err != nil {
			return nil, err
		}
		t := &tool{d: d, res: &ToolResult{Name: d.name(), Binary: d.binary()}, s3: store}
		out, err := query(ctx, d.versionCmd())
		if err != nil {
			return nil, fmt.Errorf("%s version: %w", name, err)
		}
		t.res.Version = lastLines(out, 1)
		if t.res.BinaryBLAKE3, err = fileDigest(d.binary()); err != nil {
			return nil, err
		}
		log.printf("%-8s %s (%s)", name, t.res.Version, d.binary())
		tools = append(tools, t)
	}
	return tools, nil
}

// phase runs cmd of every tool still live, one after the other, and saves
// each measurement with save.
func phase(ctx context.Context, log *logger, tools []*tool, label string, cmd func(*tool) invocation, save func(*ToolResult, *Measurement)) error {
	for _, t := range tools {
		if !t.live() {
			continue
		}
		m, err := step(ctx, log, t, label, cmd(t))
		if err != nil {
			return err
		}
		save(t.res, m)
	}
	return nil
}

// restore restores t's latest snapshot into target (created empty),
// verifies it against the source manifest want and, unless keep, removes
// it again.
// restore restores backup seq of src (the last one) into target.
func restore(ctx context.Context, log *logger, t *tool, src, target string, seq int, want map[string]workload.Entry, keep bool) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create restore target: %w", err)
	}
	m, err := step(ctx, log, t, "full restore", t.d.restoreCmd(src, target, seq))
	if err != nil {
		return err
	}
	t.res.Restore = m
	if m.OK() {
		verifyRestore(t, want, t.d.restoredRoot(target, src), log)
	}
	if keep {
		return nil
	}
	if err := os.RemoveAll(target); err != nil {
		return fmt.Errorf("remove restored tree: %w", err)
	}
	syscall.Sync()
	return nil
}

// step runs one measured command of t, flushes the page cache's dirty data
// (so that one tool's writeback is not billed to the next) and logs the
// outcome. Failures are recorded in t's errors; the error result is for a
// cancelled run only.
func step(ctx context.Context, log *logger, t *tool, label string, inv invocation) (*Measurement, error) {
	var before Traffic
	if t.s3 != nil {
		before = t.s3.proxy.snapshot()
	}
	m, _, err := measure(ctx, inv)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", t.res.Name, label, err) // the binary and ctx.Err() only
	}
	if t.s3 != nil {
		m.S3 = t.s3.proxy.snapshot().sub(before)
	}
	m.redact(t.d.secrets())
	syscall.Sync()
	switch {
	case m.Error != "":
		t.res.Errors = append(t.res.Errors, label+": "+m.Error)
		log.printf("%-8s %-20s FAILED after %.2fs: %s", t.res.Name, label, m.WallSec, m.Error)
	case m.S3 != nil:
		log.printf("%-8s %-20s %8.2fs wall %8.2fs CPU %8s RSS %6d requests %8s sent %8s received", t.res.Name, label,
			m.WallSec, m.CPUSec, fmtKiB(m.MaxRSSKiB), m.S3.Requests, units.Bytes(m.S3.SentBytes), units.Bytes(m.S3.ReceivedBytes))
	default:
		log.printf("%-8s %-20s %8.2fs wall %8.2fs CPU %8s RSS", t.res.Name, label, m.WallSec, m.CPUSec, fmtKiB(m.MaxRSSKiB))
		if m.Warning != "" {
			log.printf("%-8s %-20s warning: %s", t.res.Name, label, m.Warning)
		}
	}
	return m, nil
}

// smallChangePhase runs the small-change backup of every tool n times,
// the tools taking turns, each time from the state after the no-change
// backups: every tool's home (repository, caches, configuration) is copied
// with `cp -a` first and put back before each further run, and in S3 mode
// its bucket too (saveBucket, bucketSave.restore). The median counts; the
// last run's state is kept.
func smallChangePhase(ctx context.Context, log *logger, tools []*tool, n int, pct float64, cmd func(*tool) invocation) error {
	saved := func(t *tool) string { return t.d.homeDir() + ".before-small-change" }
	buckets := map[*tool]*bucketSave{}
	if n > 1 {
		for _, t := range tools {
			if err := cpA(ctx, t.d.homeDir(), saved(t)); err != nil {
				return err
			}
			defer os.RemoveAll(saved(t))
			if t.s3 != nil {
				bs, err := saveBucket(ctx, t.s3.client, t.d.bucket(), t.d.bucket()+"-saved")
				if err != nil {
					return err
				}
				buckets[t] = bs
				defer bs.remove(context.WithoutCancel(ctx)) //nolint:errcheck // throw-away
			}
		}
		// Not billed to the first tool's first run: its fsyncs would
		// wait for the copies' writeback.
		syscall.Sync()
	}
	runs := map[*ToolResult][]*Measurement{}
	for i := range n {
		if i > 0 {
			for _, t := range tools {
				if err := os.RemoveAll(t.d.homeDir()); err != nil {
					return fmt.Errorf("reset %s: %w", t.res.Name, err)
				}
				if err := cpA(ctx, saved(t), t.d.homeDir()); err != nil {
					return err
				}
				if bs := buckets[t]; bs != nil {
					if err := bs.restore(ctx); err != nil {
						return err
					}
				}
			}
			syscall.Sync()
		}
		label := fmt.Sprintf("%.2f%% change backup", pct)
		if n > 1 {
			label = fmt.Sprintf("%.2f%% change backup %d/%d", pct, i+1, n)
		}
		if err := phase(ctx, log, tools, label, cmd, func(r *ToolResult, m *Measurement) { runs[r] = append(runs[r], m) }); err != nil {
			return err
		}
	}
	for _, t := range tools {
		t.res.SmallChange, t.res.SmallChangeWalls = median(runs[t.res])
		t.res.SmallChangeTraffic = trafficOf(runs[t.res])
	}
	return nil
}

// trafficOf returns the S3 traffic of each run, nil in local mode.
func trafficOf(ms []*Measurement) []*Traffic {
	var out []*Traffic
	for _, m := range ms {
		if m.S3 != nil {
			out = append(out, m.S3)
		}
	}
	return out
}

// cpA copies the tree src to dst with `cp -a`: times, modes and owners
// kept, since repositories and caches may go by file times.
func cpA(ctx context.Context, src, dst string) error {
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s %s: %w: %s", src, dst, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// median returns the run with the median wall time (a failed run if any
// failed) and every run's wall time, in order.
func median(ms []*Measurement) (*Measurement, []float64) {
	if len(ms) == 0 {
		return nil, nil
	}
	walls := make([]float64, len(ms))
	for i, m := range ms {
		walls[i] = m.WallSec
		if !m.OK() {
			return m, walls
		}
	}
	sorted := slices.Clone(ms)
	slices.SortStableFunc(sorted, func(a, b *Measurement) int { return cmp.Compare(a.WallSec, b.WallSec) })
	return sorted[(len(sorted)-1)/2], walls
}

// smallChangeBatch is the share of the proxies active in each step of the
// small change.
const smallChangeBatch = 20

// mutateSmall applies workload.MutateSome steps to src, each with the next
// 1/smallChangeBatch of the proxies active and every Consul server idle,
// until at least cfg.changePct percent of its bytes changed, and returns
// the new manifest and what changed. A whole simulated minute of the mesh
// changes several percent (every proxy rewrites its stats dump), so this
// is how a change of about 1% looks: a quiet minute in which few proxies
// had traffic.
func mutateSmall(ctx context.Context, src string, opt workload.Options, cfg *config, m0 map[string]workload.Entry, log *logger) (map[string]workload.Entry, ChangeInfo, error) {
	ci := ChangeInfo{TargetPercent: cfg.changePct}
	before, err := indexBlocks(src)
	if err != nil {
		return nil, ci, err
	}
	batch := max(1, opt.Proxies/smallChangeBatch)
	for ci.Steps < cfg.maxSteps && ci.Percent < cfg.changePct {
		if err := ctx.Err(); err != nil {
			return nil, ci, fmt.Errorf("mutate: %w", err)
		}
		lo := (ci.Steps * batch) % max(1, opt.Proxies)
		act := workload.Activity{
			Proxy:  func(i int) bool { return i >= lo && i < lo+batch },
			Server: func(int) bool { return false },
		}
		if err := workload.MutateSome(src, opt, 1, act); err != nil {
			return nil, ci, fmt.Errorf("mutate %s: %w", src, err)
		}
		ci.Steps++
		ci.ActiveProxies = min(opt.Proxies, ci.Steps*batch)
		if ci.ChangeStats, err = before.changes(src); err != nil {
			return nil, ci, err
		}
	}
	m1, err := finishChange(src, &ci, m0, log)
	if err != nil {
		return nil, ci, err
	}
	if ci.Percent < cfg.changePct {
		log.printf("warning: %d steps changed only %.2f%% (target %g%%)", ci.Steps, ci.Percent, cfg.changePct)
	}
	return m1, ci, nil
}

// mutateMinute applies one workload.Mutate step (a simulated minute of
// every proxy and Consul server) to src.
func mutateMinute(src string, opt workload.Options, m0 map[string]workload.Entry, log *logger) (map[string]workload.Entry, ChangeInfo, error) {
	ci := ChangeInfo{Steps: 1}
	before, err := indexBlocks(src)
	if err != nil {
		return nil, ci, err
	}
	if err := workload.Mutate(src, opt, 1); err != nil {
		return nil, ci, fmt.Errorf("mutate %s: %w", src, err)
	}
	if ci.ChangeStats, err = before.changes(src); err != nil {
		return nil, ci, err
	}
	m1, err := finishChange(src, &ci, m0, log)
	return m1, ci, err
}

// finishChange records the file-level view of a change and logs it.
func finishChange(src string, ci *ChangeInfo, m0 map[string]workload.Entry, log *logger) (map[string]workload.Entry, error) {
	m1, err := workload.Manifest(src)
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", src, err)
	}
	ci.Files = fileChanges(m0, m1)
	log.printf("mutated %d steps: %s of %s changed (%.2f%%); files: %d new, %d changed (%s), %d removed",
		ci.Steps, units.Bytes(ci.ChangedBytes), units.Bytes(ci.TotalBytes), ci.Percent,
		ci.Files.New, ci.Files.Changed, units.Bytes(ci.Files.Bytes), ci.Files.Removed)
	log.printf("changed bytes by kind of file: %s", ci.topKinds(6))
	return m1, nil
}

// verifyRestore compares the restored tree at root with the source
// manifest want and records the outcome in t.
func verifyRestore(t *tool, want map[string]workload.Entry, root string, log *logger) {
	got, err := workload.Manifest(root)
	if err != nil {
		// A missing or unreadable tree is the tool's failure.
		t.res.Errors = append(t.res.Errors, fmt.Sprintf("restore verification: %v", err))
		log.printf("%-8s restore verification FAILED: %v", t.res.Name, err)
		return
	}
	diff := workload.Diff(want, got, true)
	t.res.RestoreDifferences = len(diff)
	t.res.RestoreVerified = len(diff) == 0
	if len(diff) == 0 {
		log.printf("%-8s restore verified: equal to the source (sockets aside)", t.res.Name)
		return
	}
	t.res.RestoreDiff = diff[:min(len(diff), maxRestoreDiff)]
	t.res.Errors = append(t.res.Errors, fmt.Sprintf("restore differs from the source in %d entries, first: %s", len(diff), diff[0]))
	log.printf("%-8s restore verification FAILED: %d differences, first: %s", t.res.Name, len(diff), strings.Join(diff[:min(len(diff), 3)], "; "))
}

func environment() Environment {
	env := Environment{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	env.Hostname, _ = os.Hostname()
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		env.Kernel = utsString(u.Sysname[:]) + " " + utsString(u.Release[:])
	}
	env.CPUModel = procField("/proc/cpuinfo", "model name")
	var kib int64
	if _, err := fmt.Sscanf(procField("/proc/meminfo", "MemTotal"), "%d kB", &kib); err == nil {
		env.MemTotalMiB = kib >> 10
	}
	return env
}

func utsString[T int8 | uint8](b []T) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

// procField returns the value of the first "key: value" line of a /proc
// file, or "".
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
