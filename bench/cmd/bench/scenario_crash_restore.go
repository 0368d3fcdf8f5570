package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/bench/workload"
)

// crashRestoreScenario kills a full restore of the newest snapshot with
// SIGKILL at seeded moments within the tool's healthy restore time, then
// looks at what the target holds: a file at its final path whose content
// is not the snapshot's (a half-written file a user or service would
// take for restored) and entries the snapshot does not hold (temporary
// files). Then it runs the restore again into the same target and
// compares the result with the manifest.
type crashRestoreScenario struct{}

func (crashRestoreScenario) id() string                { return faults.ScenarioCrashRestore }
func (crashRestoreScenario) notApplicable(*bed) string { return "" }

func (crashRestoreScenario) run(ctx context.Context, b *bed) (*faults.Cell, error) {
	r := cellRand(b.fr.cfg.seed, faults.ScenarioCrashRestore, b.tool, b.w.w.name)
	if err := b.reset(ctx, stateHealthy); err != nil {
		return nil, err
	}
	s := b.snaps[len(b.snaps)-1]
	cell := &faults.Cell{Usage: map[string]faults.Usage{}}
	if b.base.first != nil {
		cell.Usage[faults.UsageBackup] = b.base.first.Usage
	}
	inPlace, maxHalf := 0, 0
	var recoverTimes []float64
	for _, at := range killMoments(r, b.fr.prof.restoreKills, dur(b.base.restore)) {
		tr := faults.Trial{Point: fmt.Sprintf("kill at %.2fs of the full restore (healthy %.2fs)", at.Seconds(), b.base.restore.Usage.WallSeconds)}
		target := filepath.Join(b.dir, "restore-crash")
		if err := removeTree(target); err != nil {
			return nil, err
		}
		p, _, err := b.restore(ctx, s, target, at)
		if err != nil {
			return nil, err
		}
		var e restoreCrashEvidence
		e.killed = p.Killed
		if p.Killed {
			e.halfWritten, e.leftovers = inspectPartial(s.Manifest, b.a.restoredRoot(target, s.Src))
		}
		// The rerun, into the same target; a lock the kill left is a
		// human step.
		_, rc, err := b.restore(ctx, s, target, 0)
		if err != nil {
			return nil, err
		}
		if !rc.Ran && b.a.lockError(rc.Failed) {
			if un, ok := b.a.unlockCmd(); ok {
				e.humanSteps = append(e.humanSteps, commandWords(b.tool, un))
				if _, err := b.run(ctx, un, 0); err != nil {
					return nil, err
				}
				if _, rc, err = b.restore(ctx, s, target, 0); err != nil {
					return nil, err
				}
			}
		}
		e.rerun = rc
		if rc.exact() {
			tr.TimeToRecoverSeconds = fsecs(rc.Usage.WallSeconds)
			recoverTimes = append(recoverTimes, rc.Usage.WallSeconds)
		}
		if u := cell.Usage[faults.UsageRestore]; rc.Usage.WallSeconds > u.WallSeconds {
			cell.Usage[faults.UsageRestore] = rc.Usage
		}
		if len(e.halfWritten) > 0 {
			inPlace++
			maxHalf = max(maxHalf, len(e.halfWritten))
		}
		tr.Outcome, tr.Note = classifyRestoreCrash(e)
		tr.HumanSteps = e.humanSteps
		b.logf("%-32s %s: %s", tr.Point, tr.Outcome, tr.Note)
		cell.Trials = append(cell.Trials, tr)
		if err := removeTree(target); err != nil {
			return nil, err
		}
	}
	cell.Outcome = faults.Worst(trialOutcomes(cell.Trials)...)
	if len(recoverTimes) > 0 {
		cell.TimeToRecoverSeconds = fsecs(slices.Max(recoverTimes))
	}
	cell.Verdict = trialsVerdict(cell.Trials)
	if inPlace > 0 {
		cell.Verdict += fmt.Sprintf("; writes in place: half-written files under their final names after %d of %d kills (up to %d files)",
			inPlace, len(cell.Trials), maxHalf)
	} else {
		cell.Verdict += "; no half-written file under its final name after any kill"
	}
	return cell, nil
}

// inspectPartial compares what a killed restore left at root with the
// snapshot's manifest: files at a path the snapshot holds as a file whose
// size or content differ (half-written, visible under the final name),
// and entries the snapshot does not hold. Missing entries are expected
// and not listed.
func inspectPartial(want manifest, root string) (halfWritten, leftovers []string) {
	got, err := workload.Manifest(root)
	if err != nil {
		return nil, nil // nothing restored yet (the root not created)
	}
	for p, g := range got {
		w, ok := want[p]
		switch {
		case !ok:
			leftovers = append(leftovers, p)
		case g.Type == "file" && w.Type == "file" && (g.Size != w.Size || g.Hash != w.Hash):
			halfWritten = append(halfWritten, fmt.Sprintf("%s (%d of %d bytes)", p, g.Size, w.Size))
		}
	}
	slices.Sort(halfWritten)
	slices.SortFunc(leftovers, strings.Compare)
	return halfWritten, leftovers
}
