package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/internal/units"
)

// crashBackupScenario kills backups with SIGKILL at seeded moments within
// the tool's own healthy duration: the first backup (from the empty
// repository, of the pristine set) and the incremental one (the 1% change,
// from the state after the no-change backup). After each kill: the next
// backup (through the tool's unlock if a lock stops it: a human step),
// every snapshot reported done restored and compared with its manifest,
// the tool's check, the repository's growth over the crash-free run of
// the same backups (orphans) and what is left of it after its prune.
type crashBackupScenario struct{}

func (crashBackupScenario) id() string                { return faults.ScenarioCrashBackup }
func (crashBackupScenario) notApplicable(*bed) string { return "" }

// crashKind is the backup a trial kills.
type crashKind struct {
	name string
	// state is the home the trial starts from; healthy the crash-free
	// run of the same backup; refBytes the repository's size after it.
	state    string
	healthy  *procResult
	refBytes int64
	// src and m are what it backs up.
	src string
	m   manifest
}

func (crashBackupScenario) run(ctx context.Context, b *bed) (*faults.Cell, error) {
	r := cellRand(b.fr.cfg.seed, faults.ScenarioCrashBackup, b.tool, b.w.w.name)
	kinds := []crashKind{
		{name: "first backup", state: stateInit, healthy: b.base.first, refBytes: b.base.firstBytes, src: b.w.dir, m: b.w.manifest},
		{name: "incremental backup", state: stateNoChange, healthy: b.base.change, refBytes: b.base.changeBytes, src: b.src, m: b.srcManifest},
	}
	cell := &faults.Cell{Usage: map[string]faults.Usage{}, Orphans: &faults.Orphans{}}
	var recoverTimes []float64
	for _, k := range kinds {
		for _, at := range killMoments(r, b.fr.prof.backupKills, dur(k.healthy)) {
			tr, err := crashBackupTrial(ctx, b, k, at, cell)
			if err != nil {
				return nil, err
			}
			if tr.TimeToRecoverSeconds != nil {
				recoverTimes = append(recoverTimes, *tr.TimeToRecoverSeconds)
			}
			b.logf("%-32s %s: %s", tr.Point, tr.Outcome, tr.Note)
			cell.Trials = append(cell.Trials, tr)
		}
	}
	cell.Outcome = faults.Worst(trialOutcomes(cell.Trials)...)
	if len(recoverTimes) > 0 {
		cell.TimeToRecoverSeconds = fsecs(slices.Max(recoverTimes))
	}
	cell.Verdict = trialsVerdict(cell.Trials) + fmt.Sprintf("; orphans up to %s, %s after prune",
		fmtBytes(cell.Orphans.LeftBytes), fmtBytes(cell.Orphans.AfterPruneBytes))
	return cell, nil
}

// crashBackupTrial kills one backup at moment at and judges the recovery.
// It raises cell's orphans and recovery-backup usage to this trial's when
// they are higher (the cell keeps the worst trial's).
func crashBackupTrial(ctx context.Context, b *bed, k crashKind, at time.Duration, cell *faults.Cell) (faults.Trial, error) {
	tr := faults.Trial{Point: fmt.Sprintf("kill at %.2fs of the %s (healthy %.2fs)", at.Seconds(), k.name, k.healthy.Usage.WallSeconds)}
	if err := b.reset(ctx, k.state); err != nil {
		return tr, err
	}
	var e crashEvidence
	p, _, err := b.backup(ctx, k.src, k.m, "snapshot of the killed "+k.name, at)
	if err != nil {
		return tr, err
	}
	e.killed = p.Killed
	if !p.Killed && !p.ok() {
		// It failed by itself before the kill: that is a finding too.
		e.recoveryFailed = "the backup failed before the kill: " + p.Failed
	}
	// A snapshot the killed run finished counts as reported done only if
	// the tool lists it: it holds the same source.
	ids, err := b.listed(ctx)
	if err != nil {
		e.recoveryFailed = err.Error()
	}
	for _, id := range ids {
		if !slices.ContainsFunc(b.snaps, func(s snapRec) bool { return sameSnapshot(s.ID, id) }) {
			b.snaps = append(b.snaps, snapRec{ID: id, Label: "snapshot the killed " + k.name + " finished", Src: k.src, Manifest: k.m})
		}
	}
	// Recovery: back up again until a snapshot restores exact (two tries).
	var recovered *snapRec
	var wall float64
	var rc restoreCheck
	for try := 0; try < 2 && recovered == nil; try++ {
		p, s, err := b.backupUnlocking(ctx, k.src, k.m, "recovery backup after the kill", &e.humanSteps)
		if err != nil {
			return tr, err
		}
		wall += p.Usage.WallSeconds // with the unlock and the refused try, if any
		if s == nil {
			e.recoveryFailed = p.Failed
			continue
		}
		e.recoveryFailed = ""
		if u := cell.Usage[faults.UsageBackup]; p.Usage.WallSeconds > u.WallSeconds {
			cell.Usage[faults.UsageBackup] = p.Usage
		}
		if rc, err = b.restoreFresh(ctx, *s, "recovery"); err != nil {
			return tr, err
		}
		if u := cell.Usage[faults.UsageRestore]; rc.Usage.WallSeconds > u.WallSeconds {
			cell.Usage[faults.UsageRestore] = rc.Usage
		}
		if rc.exact() {
			recovered = s
			tr.TimeToRecoverSeconds = fsecs(wall)
		}
	}
	e.restores = append(e.restores, rc)
	// Every other snapshot reported done: the earlier ones and the killed
	// run's, if it finished one.
	listedNow, lerr := b.listed(ctx)
	for i, s := range b.snaps {
		if recovered != nil && s.ID == recovered.ID {
			continue
		}
		if lerr == nil && !slices.ContainsFunc(listedNow, func(id string) bool { return sameSnapshot(id, s.ID) }) {
			e.restores = append(e.restores, restoreCheck{Label: s.Label, Failed: "no longer listed"})
			continue
		}
		c, err := b.restoreFresh(ctx, s, fmt.Sprintf("earlier-%d", i))
		if err != nil {
			return tr, err
		}
		e.restores = append(e.restores, c)
	}
	p, err = b.runUnlocking(ctx, b.a.checkCmd(false), &e.humanSteps)
	if err != nil {
		return tr, err
	}
	if !p.ok() {
		e.checkFailed = p.Failed
	}
	// Orphans: growth over the crash-free run, before and after prune.
	left, err := repoBytes(ctx, b.a)
	if err != nil {
		return tr, err
	}
	var pruneFailed []string
	for _, inv := range b.a.pruneCmds(0) {
		p, err := b.runUnlocking(ctx, inv, &e.humanSteps)
		if err != nil {
			return tr, err
		}
		if !p.ok() {
			pruneFailed = append(pruneFailed, p.Failed)
		}
	}
	after, err := repoBytes(ctx, b.a)
	if err != nil {
		return tr, err
	}
	cell.Orphans.LeftBytes = max(cell.Orphans.LeftBytes, left-k.refBytes)
	cell.Orphans.AfterPruneBytes = max(cell.Orphans.AfterPruneBytes, after-k.refBytes)
	tr.Outcome, tr.Note = classifyCrash(e)
	tr.Note += fmt.Sprintf("; repository %+d bytes over the crash-free run, %+d after prune", left-k.refBytes, after-k.refBytes)
	if len(pruneFailed) > 0 {
		tr.Note += "; prune failed: " + strings.Join(pruneFailed, "; ")
	}
	tr.HumanSteps = e.humanSteps
	return tr, nil
}

// fmtBytes formats a byte count that may be negative.
func fmtBytes(n int64) string {
	if n < 0 {
		return "-" + units.Bytes(-n)
	}
	return units.Bytes(n)
}

// trialsVerdict sums up trials by outcome: "3 of 6 trials recovered_automatically, ...".
func trialsVerdict(ts []faults.Trial) string {
	counts := map[faults.Outcome]int{}
	var order []faults.Outcome
	for _, t := range ts {
		if counts[t.Outcome] == 0 {
			order = append(order, t.Outcome)
		}
		counts[t.Outcome]++
	}
	slices.SortFunc(order, func(a, b faults.Outcome) int { return b.Rank() - a.Rank() })
	var parts []string
	for _, o := range order {
		parts = append(parts, fmt.Sprintf("%d of %d trials %s", counts[o], len(ts), o))
	}
	if w := faults.Worst(trialOutcomes(ts)...); w.Rank() > faults.RecoveredAuto.Rank() {
		for _, t := range ts {
			if t.Outcome == w {
				parts = append(parts, fmt.Sprintf("worst: %s: %s", t.Point, t.Note))
				break
			}
		}
	}
	return strings.Join(parts, ", ")
}
