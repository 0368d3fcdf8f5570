package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v4/mem"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/bench/workload"
)

// The fault benchmark (-faults): every selected scenario on every
// selected tool and workload, each tool × workload on its own bed (a
// working source and the tool's home, with saved states of both), the
// results in faults.json (bench/faults).
//
// A scenario is one file implementing scenario and one line in
// scenarioRegistry.

// scenario is one fault scenario of the benchmark.
type scenario interface {
	// id is the scenario's identifier (faults.Scenario*).
	id() string
	// notApplicable returns why the scenario cannot be applied to the
	// tool on the workload, "" when it can.
	notApplicable(b *bed) string
	// run runs the scenario's trials on b and returns the cell (Tool,
	// Scenario and Workload are filled in by the caller). It leaves b's
	// working source with the content it found (b.srcManifest), possibly
	// with new inodes, and b's home in any state: the next scenario resets
	// it. The error is for what keeps the bench itself from going on (a
	// cancelled run, a full disk); a tool's failure is a result.
	run(ctx context.Context, b *bed) (*faults.Cell, error)
}

// variantScenario is a scenario that runs some tools more than once, with
// different settings: each run is a cell of its own, told apart by
// Cell.Variant (backupd with and without its impact budget).
type variantScenario interface {
	scenario
	// variants returns the variants of the tool on b; none: run alone.
	variants(tool string) []string
	// runVariant is run for one variant.
	runVariant(ctx context.Context, b *bed, variant string) (*faults.Cell, error)
}

// scenarioRegistry lists the scenarios in the order they run.
func scenarioRegistry() []scenario {
	return []scenario{
		healthyScenario{},
		crashBackupScenario{},
		crashRestoreScenario{},
		outageScenario{},
		sourceBitRotScenario{},
		repoCorruptionScenario{},
		proxyCrashScenario{},
		lostWritesScenario{},
		impactScenario{},
	}
}

// profile is the size of a run: the workloads' sizes and the trials per
// scenario.
type profile struct {
	name  string
	mesh  workload.Options
	small workload.SmallFilesOptions
	// backupKills is the number of SIGKILLs of each of the first and the
	// incremental backup; restoreKills of the restore.
	backupKills, restoreKills int
	// bitRotFiles is how many source files rot.
	bitRotFiles int
	// corruptTrials is the number of trials of each kind of damage;
	// damages names the kinds (damageKinds) to inject, nil for all.
	corruptTrials int
	damages       []string
	// runLimit is the longest a tool's run may take before it is killed
	// and counted as failed.
	runLimit time.Duration
	// hangGrace is how long past MinIO's return (and ten healthy runs)
	// a backup of the outage scenario may go on before it counts as hung
	// and is stopped: longer than the backoff of a tool riding the
	// outage out (backupd's retry waits up to 10 s). failGrace is the
	// same for the local faults (with three healthy runs), which last
	// until the run ends: a tool must fail cleanly within it (every
	// clean failure here came within 3 s of the fault).
	hangGrace, failGrace time.Duration
	// s3Down is how long the outage scenario's MinIO stays down.
	s3Down time.Duration
	// impactWindow is how long the impact scenario's writer runs beside
	// each tool's first backups (repeated from the empty repository, the
	// writer stopped in between, until the runs add up to it, at most
	// impactMaxRuns times) and alone for the baseline.
	impactWindow time.Duration
}

func profiles() map[string]profile {
	return map[string]profile{
		"quick": {name: "quick",
			mesh:        workload.Options{Proxies: 20, ConsulServers: 1, Scale: 0.05},
			small:       workload.SmallFilesOptions{Files: 2_000, Dirs: 20},
			backupKills: 1, restoreKills: 2, bitRotFiles: 5, corruptTrials: 1, runLimit: 90 * time.Second, hangGrace: 20 * time.Second, failGrace: 5 * time.Second, s3Down: 5 * time.Second, impactWindow: 5 * time.Second},
		"full": {name: "full",
			mesh:        workload.Options{Proxies: 200, ConsulServers: 3, Scale: 1},
			small:       workload.SmallFilesOptions{Files: 100_000, Dirs: 1_000},
			backupKills: 10, restoreKills: 5, bitRotFiles: 20, corruptTrials: 5, runLimit: 10 * time.Minute, hangGrace: time.Minute, failGrace: 30 * time.Second, s3Down: 10 * time.Second, impactWindow: 30 * time.Second},
	}
}

// subsetShare is the share of the data the tools' partial verification
// reads per run: 1/subsetShare.
const subsetShare = 10

// faultsConfig is the fault benchmark's part of the command line.
type faultsConfig struct {
	profile string
	// custom, when set, is used instead of the named profile (tests).
	custom    *profile
	scenarios []string // nil: all
	workloads []string // nil: all
}

// faultRun is one run of the fault benchmark.
type faultRun struct {
	cfg      *config
	prof     profile
	progress *progress
	res      *faults.Results
	outDir   string
	runDir   string
	// checkDir holds the restores that verify a scenario's snapshots
	// (checkTarget): a tmpfs when the bench can mount one (checkRestoreDir).
	checkDir string
	// bins are the tools' binaries, order the tools selected.
	bins  map[string]string
	order []string
	// now is the clock (the tests' could be another).
	now func() time.Time
}

func runFaults(ctx context.Context, cfg *config, prog *progress) (*faults.Results, error) {
	prof, ok := profiles()[cfg.faults.profile]
	if cfg.faults.custom != nil {
		prof, ok = *cfg.faults.custom, true
	}
	if !ok {
		return nil, fmt.Errorf("-profile %q: want quick or full", cfg.faults.profile)
	}
	scns, err := selectScenarios(cfg.faults.scenarios)
	if err != nil {
		return nil, err
	}
	wls, err := selectWorkloads(cfg.faults.workloads, prof)
	if err != nil {
		return nil, err
	}
	bins, order, err := selectTools(cfg.tools, cfg.backupd)
	if err != nil {
		return nil, err
	}
	fr := &faultRun{cfg: cfg, prof: prof, progress: prog, outDir: cfg.out, bins: bins, order: order, now: time.Now,
		runDir: filepath.Join(cfg.work, "run")}
	fr.res = &faults.Results{Started: fr.now().UTC(), Profile: prof.name, Seed: cfg.seed, Host: faultHost()}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.out, err)
	}
	// A run that was killed may have left its tmpfs mounted.
	fr.checkDir = filepath.Join(fr.runDir, "checks")
	unmount(fr.checkDir)
	if err := os.RemoveAll(fr.runDir); err != nil {
		return nil, fmt.Errorf("remove the previous run: %w", err)
	}
	if err := os.MkdirAll(fr.runDir, 0o755); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	// bin/backupd is rebuilt by whoever works on the tree: run a copy.
	if b, ok := bins["backupd"]; ok {
		cp := filepath.Join(fr.runDir, "bin", "backupd")
		if err := os.MkdirAll(filepath.Dir(cp), 0o755); err != nil {
			return nil, fmt.Errorf("copy backupd: %w", err)
		}
		if err := copyFile(b, cp, 0o755); err != nil {
			return nil, fmt.Errorf("copy backupd: %w", err)
		}
		bins["backupd"] = cp
	}
	for _, name := range order {
		t, err := toolInfo(ctx, name, bins[name], filepath.Join(fr.runDir, "version-"+name))
		if err != nil {
			return nil, err
		}
		fr.res.Tools = append(fr.res.Tools, t)
		prog.logf("%-8s %s (%s)", name, t.Version, bins[name])
	}
	var prepared []*preparedWorkload
	for _, w := range wls {
		pw, err := prepareWorkload(ctx, w, filepath.Join(cfg.work, "sets"), prog)
		if err != nil {
			return nil, err
		}
		prepared = append(prepared, pw)
		fr.res.Workloads = append(fr.res.Workloads, pw.info)
	}
	var largest int64
	for _, pw := range prepared {
		largest = max(largest, pw.info.Bytes)
	}
	where, err := checkRestoreDir(ctx, fr.checkDir, largest)
	if err != nil {
		return nil, err
	}
	defer unmount(fr.checkDir)
	fr.res.CheckRestores = where
	prog.logf("verification restores go to %s", where)
	prog.total = len(prepared) * cellCount(order, scns)
	for _, pw := range prepared {
		for _, tool := range order {
			if err := fr.runBed(ctx, pw, tool, scns); err != nil {
				return fr.res, err
			}
		}
	}
	fr.res.Finished = fr.now().UTC()
	if err := faults.Write(fr.outDir, fr.res); err != nil {
		return fr.res, err
	}
	return fr.res, nil
}

// checkRestoreDir creates dir for the restores that verify the fault
// scenarios' snapshots against their manifests and, as root, mounts a
// tmpfs there: twice the largest set and 64 MiB, when the machine's
// available memory is at least twice that (the restores are removed one
// by one, so the tmpfs holds one tree at a time). Creating thousands of
// files on a disk costs from 0.1 to 2 ms each, and varies by the minute
// on a shared machine; in RAM these restores measure the tool, and the
// run takes a third less. The healthy phase's timed restore and the
// crash-restore scenario's killed ones stay on the disk. where says which
// it is, for the report.
func checkRestoreDir(ctx context.Context, dir string, largest int64) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	size := (2*largest + 64<<20 + 4095) / 4096 * 4096
	if os.Geteuid() != 0 {
		return "the disk (mounting a tmpfs needs root)", nil
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil || vm.Available < uint64(2*size) {
		return fmt.Sprintf("the disk (a %s tmpfs needs %s of available memory)", fmtBytes(size), fmtBytes(2*size)), nil
	}
	if err := mountCmd(ctx, "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "tmpfs", dir); err != nil {
		return "", err
	}
	return fmt.Sprintf("a %s tmpfs (RAM)", fmtBytes(size)), nil
}

// cellCount is the number of cells the tools and scenarios make on one
// workload: one per tool and scenario, or one per variant.
func cellCount(tools []string, scns []scenario) int {
	n := 0
	for _, tool := range tools {
		for _, s := range scns {
			if vs, ok := s.(variantScenario); ok {
				n += max(1, len(vs.variants(tool)))
			} else {
				n++
			}
		}
	}
	return n
}

// runBed runs every scenario on one tool and workload: the bed's
// baseline first (the healthy phase, whose states the others start from),
// then each scenario.
func (fr *faultRun) runBed(ctx context.Context, pw *preparedWorkload, tool string, scns []scenario) error {
	dir := filepath.Join(fr.runDir, pw.w.name, tool)
	b, err := newBed(ctx, fr, pw, tool, dir)
	if err != nil {
		return err
	}
	fr.progress.begin("baseline", tool, pw.w.name)
	baseErr := b.prepareBaseline(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, s := range scns {
		variants := []string{""}
		vs, hasVariants := s.(variantScenario)
		if hasVariants {
			if v := vs.variants(tool); len(v) > 0 {
				if s.notApplicable(b) == "" {
					variants = v
				} else {
					// One cell says why, where cellCount counted one per
					// variant.
					fr.progress.total -= len(v) - 1
				}
			}
		}
		for _, variant := range variants {
			fr.progress.begin(s.id(), tool, pw.w.name)
			cell := &faults.Cell{}
			switch reason := s.notApplicable(b); {
			case reason != "":
				cell = &faults.Cell{Outcome: faults.NotApplicable, Reason: reason, Verdict: "not applicable: " + reason}
			case baseErr != nil && s.id() != faults.ScenarioHealthy:
				cell = notRun(fmt.Errorf("the healthy phase failed: %w", baseErr))
			default:
				var c *faults.Cell
				var err error
				if variant != "" {
					c, err = vs.runVariant(ctx, b, variant)
				} else {
					c, err = s.run(ctx, b)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					cell = notRun(err)
				} else {
					cell = c
				}
			}
			cell.Tool, cell.Scenario, cell.Workload, cell.Variant = tool, s.id(), pw.w.name, variant
			if cell.Outcome == "" {
				cell.Outcome = faults.Worst(trialOutcomes(cell.Trials)...)
			}
			fr.res.Cells = append(fr.res.Cells, *cell)
			fr.progress.cellDone(cell)
			// Results so far survive an interrupted run.
			fr.res.Finished = fr.now().UTC()
			if err := faults.Write(fr.outDir, fr.res); err != nil {
				return err
			}
		}
	}
	if !fr.cfg.keep {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
	}
	return nil
}

// notRun is the cell of a scenario the bench could not run.
func notRun(err error) *faults.Cell {
	return &faults.Cell{Outcome: faults.NotApplicable, Reason: "the bench could not run it: " + err.Error(),
		Verdict: "not run: " + err.Error()}
}

func trialOutcomes(ts []faults.Trial) []faults.Outcome {
	var os []faults.Outcome
	for _, t := range ts {
		os = append(os, t.Outcome)
	}
	return os
}

func selectScenarios(want []string) ([]scenario, error) {
	all := scenarioRegistry()
	if want == nil {
		return all, nil
	}
	var out []scenario
	for _, id := range want {
		i := slices.IndexFunc(all, func(s scenario) bool { return s.id() == id })
		if i < 0 {
			var ids []string
			for _, s := range all {
				ids = append(ids, s.id())
			}
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (want some of %s)", id, strings.Join(ids, ","))
		}
		out = append(out, all[i])
	}
	// Run in registry order, whatever the order named.
	slices.SortStableFunc(out, func(a, b scenario) int {
		return slices.IndexFunc(all, func(s scenario) bool { return s.id() == a.id() }) -
			slices.IndexFunc(all, func(s scenario) bool { return s.id() == b.id() })
	})
	return slices.CompactFunc(out, func(a, b scenario) bool { return a.id() == b.id() }), nil
}

// toolInfo records a tool's version and settings.
func toolInfo(ctx context.Context, name, bin, home string) (faults.Tool, error) {
	a, err := newAdapter(name, bin, home)
	if err != nil {
		return faults.Tool{}, err
	}
	out, err := query(ctx, a.versionCmd())
	if err != nil {
		return faults.Tool{}, fmt.Errorf("%s version: %w", name, err)
	}
	v := shortVersion(lastLines(out, 1))
	if v == "" {
		v = lastLines(out, 1)
	}
	return faults.Tool{Name: name, Version: v, Settings: a.settings()}, nil
}

func faultHost() faults.Host {
	h := faults.Host{CPUs: runtime.NumCPU(), GoOS: runtime.GOOS, GoArch: runtime.GOARCH}
	h.Hostname, _ = os.Hostname()
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		h.Kernel = utsString(u.Sysname[:]) + " " + utsString(u.Release[:])
	}
	return h
}

// cellRand returns the random stream of one cell's trials: a function of
// the run's seed, the scenario, tool and workload.
func cellRand(seed uint64, parts ...string) *rand.Rand {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	s := h.Sum64()
	return rand.New(rand.NewPCG(seed, s))
}

// killMoments draws n moments within d (between 5% and 95% of it), in
// increasing order.
func killMoments(r *rand.Rand, n int, d time.Duration) []time.Duration {
	ms := make([]time.Duration, n)
	for i := range ms {
		ms[i] = time.Duration((0.05 + 0.9*r.Float64()) * float64(d))
	}
	slices.Sort(ms)
	return ms
}

func fsecs(f float64) *float64 { return &f }

// errNoSnapshot is a backup that succeeded without printing its snapshot.
var errNoSnapshot = errors.New("no snapshot ID")
