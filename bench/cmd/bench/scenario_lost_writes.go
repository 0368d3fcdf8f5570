package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/bench/lostwrites"
)

// lostWritesScenario (scenario 7) loses the repository host's unsynced
// writes under each tool: the repository directory is served through
// bench/lostwrites (FUSE) while a backup runs to completion, then a power
// cut rolls every file back to its last fsync (names are kept: a file
// system that journals metadata, not data). The backup reported done
// before the cut; the question is whether what it reported survives:
// every snapshot listed and restored byte-exact, the tool's full check
// clean, the next backup fine without a human.
//
// dm-flakey's drop_writes would do the same at the block layer, but this
// machine's kernel has no device mapper (and no modules to load it), so
// the FUSE layer stands in; it needs root and /dev/fuse.
type lostWritesScenario struct{}

func (lostWritesScenario) id() string { return faults.ScenarioLostWrites }

func (lostWritesScenario) notApplicable(*bed) string {
	if os.Geteuid() != 0 {
		return "mounting the lost-writes FUSE file system needs root"
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "no /dev/fuse for the lost-writes file system: " + err.Error()
	}
	return ""
}

func (lostWritesScenario) run(ctx context.Context, b *bed) (*faults.Cell, error) {
	kinds := []crashKind{
		{name: "first backup", state: stateInit, src: b.w.dir, m: b.w.manifest},
		{name: "incremental backup", state: stateNoChange, src: b.src, m: b.srcManifest},
	}
	cell := &faults.Cell{Usage: map[string]faults.Usage{}}
	for _, k := range kinds {
		tr, err := lostWritesTrial(ctx, b, k, cell)
		if err != nil {
			return nil, err
		}
		b.logf("%-32s %s: %s", tr.Point, tr.Outcome, tr.Note)
		cell.Trials = append(cell.Trials, tr)
	}
	cell.Outcome = faults.Worst(trialOutcomes(cell.Trials)...)
	cell.Verdict = trialsVerdict(cell.Trials)
	return cell, nil
}

// lostWritesEvidence is what a power cut after a backup left.
type lostWritesEvidence struct {
	backupFailed string // the backup under the lost-writes layer failed
	dropped      lostwrites.Report
	restores     []restoreCheck
	checkFailed  string
	nextFailed   string
	humanSteps   []string
}

func classifyLostWrites(e lostWritesEvidence) (faults.Outcome, string) {
	var v verdicts
	v.judgeRestores(e.restores)
	if e.checkFailed != "" {
		v.add(faults.NeededHuman, "the full check after the power cut failed: %s", e.checkFailed)
	}
	if e.nextFailed != "" {
		v.add(faults.NeededHuman, "the next backup failed: %s", e.nextFailed)
	}
	if len(e.humanSteps) > 0 {
		v.add(faults.NeededHuman, "needed %s", strings.Join(e.humanSteps, ", then "))
	}
	if e.backupFailed != "" {
		v.add(faults.NeededHuman, "the backup failed on the lost-writes file system: %s", e.backupFailed)
	}
	cut := fmt.Sprintf("the power cut dropped %s unsynced in %d files (%d fsyncs seen)", fmtBytes(e.dropped.Bytes), e.dropped.Files, e.dropped.Syncs)
	if len(v.outcomes) == 0 {
		v.add(faults.SurvivedExact, "every snapshot reported done is listed and restores exact, the full check is clean and the next backup succeeded; %s", cut)
	} else {
		v.notes[0] += "; " + cut
	}
	return v.worst()
}

// lostWritesTrial runs kind's backup with the repository under the
// lost-writes layer, cuts the power and judges what is left.
func lostWritesTrial(ctx context.Context, b *bed, k crashKind, cell *faults.Cell) (faults.Trial, error) {
	tr := faults.Trial{Point: "power cut after the " + k.name + " reported done"}
	if err := b.reset(ctx, k.state); err != nil {
		return tr, err
	}
	repo := b.a.repoDir()
	backing := filepath.Join(b.dir, "lost-writes-backing")
	if err := removeTree(backing); err != nil {
		return tr, err
	}
	if err := os.Rename(repo, backing); err != nil {
		return tr, fmt.Errorf("move the repository under the lost-writes layer: %w", err)
	}
	if err := os.Mkdir(repo, 0o755); err != nil {
		return tr, err
	}
	lw, err := lostwrites.Mount(backing, repo)
	if err != nil {
		return tr, err
	}
	var e lostWritesEvidence
	p, _, err := b.backup(ctx, k.src, k.m, "snapshot of the "+k.name+" before the power cut", 0)
	rep, cutErr := lw.PowerCut()
	if err == nil {
		err = cutErr
	}
	if rerr := os.Remove(repo); rerr != nil && err == nil {
		err = rerr
	}
	if rerr := os.Rename(backing, repo); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return tr, err
	}
	e.dropped = rep
	if !p.ok() {
		e.backupFailed = lastLines(p.Failed, 1)
	} else if u := cell.Usage[faults.UsageBackup]; p.Usage.WallSeconds > u.WallSeconds {
		cell.Usage[faults.UsageBackup] = p.Usage
	}
	// Every snapshot reported done: listed, and restored exact.
	listed, lerr := b.listed(ctx)
	for i, s := range b.snaps {
		if lerr != nil {
			e.restores = append(e.restores, restoreCheck{Label: s.Label, Failed: "the tool cannot list its snapshots: " + lerr.Error()})
			continue
		}
		if !slices.ContainsFunc(listed, func(id string) bool { return sameSnapshot(id, s.ID) }) {
			e.restores = append(e.restores, restoreCheck{Label: s.Label, Failed: "no longer listed"})
			continue
		}
		c, err := b.restoreFresh(ctx, s, fmt.Sprintf("lost-writes-%d", i))
		if err != nil {
			return tr, err
		}
		if u := cell.Usage[faults.UsageRestore]; c.Usage.WallSeconds > u.WallSeconds {
			cell.Usage[faults.UsageRestore] = c.Usage
		}
		e.restores = append(e.restores, c)
	}
	chk, err := b.runUnlocking(ctx, b.a.checkCmd(true), &e.humanSteps)
	if err != nil {
		return tr, err
	}
	if !chk.ok() {
		e.checkFailed = lastLines(chk.Failed, 1)
	}
	next, s, err := b.backupUnlocking(ctx, k.src, k.m, "backup after the power cut", &e.humanSteps)
	if err != nil {
		return tr, err
	}
	if s == nil {
		e.nextFailed = lastLines(next.Failed, 1)
	}
	tr.Outcome, tr.Note = classifyLostWrites(e)
	tr.HumanSteps = e.humanSteps
	return tr, nil
}
