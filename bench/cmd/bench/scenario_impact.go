package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/bench/impact"
)

// impactScenario (scenario 8) measures what a backup costs the workload
// beside it: the proxy-like writer of bench/impact (a 300–500 byte line
// appended and fsynced every 10 ms on the source's file system) runs
// first with nothing else (the baseline, Results.Baselines
// "impact/<workload>"), then during each tool's first backup of the
// workload (the most reading and writing a backup does), and its append
// and fsync latencies are the cell's. The backup is restored and
// compared, so a budget that cost data would show. backupd runs twice:
// "budget", as its daemon runs with the impact budget on (nice 10, I/O
// best-effort 7, cpu_class idle, and a policy budget of impactReadRate
// and impactCPU), and "no-budget", with its priority off and no limits,
// as the other tools run.
type impactScenario struct{}

// The budget of backupd's "budget" variant: what an operator sharing a
// node with a mesh might give it.
const (
	impactReadRate = "50MiB/s"
	impactCPU      = "0.5"
)

func (impactScenario) id() string                { return faults.ScenarioImpact }
func (impactScenario) notApplicable(*bed) string { return "" }

func (impactScenario) variants(tool string) []string {
	if tool == "backupd" {
		return []string{"budget", "no-budget"}
	}
	return nil
}

func (impactScenario) run(ctx context.Context, b *bed) (*faults.Cell, error) {
	return impactRun(ctx, b, "")
}

func (impactScenario) runVariant(ctx context.Context, b *bed, variant string) (*faults.Cell, error) {
	return impactRun(ctx, b, variant)
}

// impactMaxRuns only bounds a tool so fast that its runs would take far
// longer to set up than to run: every tool's samples should cover the
// window, or a fast one's p99 is little more than its worst sample.
const impactMaxRuns = 200

// withBudget is backupd's backup as its daemon would run it with the
// impact budget on: at nice 10 and I/O best-effort 7 (what backupd run
// sets on itself by default) under SCHED_IDLE (its cpu_class: idle), with
// --read-rate and --cpu-limit before the source.
func withBudget(inv invocation) invocation {
	n := len(inv.args)
	args := append([]string{"-i", "0", "nice", "-n", "10", "ionice", "-c", "2", "-n", "7", inv.bin}, inv.args[:n-1]...)
	args = append(args, "--read-rate", impactReadRate, "--cpu-limit", impactCPU, inv.args[n-1])
	inv.bin, inv.args = "chrt", args
	return inv
}

// probe runs the writer beside b's source while fn runs and returns the
// latency of every append.
func probe(ctx context.Context, b *bed, seed uint64, fn func() error) ([]time.Duration, error) {
	path := filepath.Join(b.dir, "proxy-probe.log")
	w, err := impact.Start(ctx, impact.Options{Path: path, Source: b.src, Seed: seed})
	if err != nil {
		return nil, err
	}
	ferr := fn()
	_, werr := w.Stop()
	_ = os.Remove(path)
	if ferr != nil {
		return nil, ferr
	}
	return w.Samples(), werr
}

func impactRun(ctx context.Context, b *bed, variant string) (*faults.Cell, error) {
	window := b.fr.prof.impactWindow
	// The baseline, once per workload (the first cell's): the writer
	// alone, after the page cache's dirty data is written out.
	key := "impact/" + b.w.w.name
	base, ok := b.fr.res.Baselines[key]
	if !ok {
		syscall.Sync()
		baseSamples, err := probe(ctx, b, 1, func() error {
			t := time.NewTimer(window)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if err != nil {
			return nil, fmt.Errorf("baseline writer: %w", err)
		}
		base = impact.Summarize(baseSamples)
		if b.fr.res.Baselines == nil {
			b.fr.res.Baselines = map[string]faults.Latency{}
		}
		b.fr.res.Baselines[key] = base
	}
	var samples []time.Duration
	var wall time.Duration
	var first *procResult
	var snap *snapRec
	runs := 0
	for runs < impactMaxRuns && wall < window {
		runs++
		if err := b.reset(ctx, stateInit); err != nil {
			return nil, err
		}
		b.seq++
		inv := b.a.backupCmd(b.src, b.seq)
		if variant == "budget" {
			inv = withBudget(inv)
		}
		var p *procResult
		s, err := probe(ctx, b, uint64(2+runs), func() error {
			var err error
			p, err = b.run(ctx, inv, 0)
			return err
		})
		if err != nil {
			return nil, err
		}
		samples = append(samples, s...)
		wall += dur(p)
		p, snap, err = b.recordBackup(p, nil, b.src, b.srcManifest, "first backup beside the writer")
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = p
		}
		if snap == nil {
			break
		}
	}
	lat := impact.Summarize(samples)
	cell := &faults.Cell{Usage: map[string]faults.Usage{faults.UsageBackup: first.Usage}, Latency: &lat}
	var v verdicts
	if snap == nil {
		v.add(faults.NeededHuman, "a backup failed beside the writer: %s", first.Failed)
	} else {
		rc, err := b.restoreFresh(ctx, *snap, "impact")
		if err != nil {
			return nil, err
		}
		cell.Usage[faults.UsageRestore] = rc.Usage
		v.judgeRestores([]restoreCheck{rc})
		if len(v.outcomes) == 0 {
			v.add(faults.SurvivedExact, "the backups restored exact")
		}
	}
	var verdict string
	cell.Outcome, verdict = v.worst()
	how := "its defaults"
	switch variant {
	case "budget":
		how = "nice 10, I/O best-effort 7, CPU idle, --read-rate " + impactReadRate + " --cpu-limit " + impactCPU
	case "no-budget":
		how = "no priority change and no limits"
	}
	cell.Verdict = fmt.Sprintf("writer append+fsync p50/p99/max %s during %d first backups (%s; %.2f s wall, %.2f CPU-s each), %s with no backup; %s",
		latencyWords(lat), runs, how, first.Usage.WallSeconds, first.Usage.CPUSeconds, latencyWords(base), verdict)
	b.logf("%-32s %s (baseline %s)", "impact "+variant, latencyWords(lat), latencyWords(base))
	return cell, nil
}

// latencyWords is p50/p99/max in milliseconds.
func latencyWords(l faults.Latency) string {
	if l.Samples == 0 {
		return "(no samples)"
	}
	return fmt.Sprintf("%.2f/%.2f/%.2f ms (%d appends)", l.P50Seconds*1000, l.P99Seconds*1000, l.MaxSeconds*1000, l.Samples)
}
