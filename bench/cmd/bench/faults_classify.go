package main

import (
	"fmt"
	"strings"

	"github.com/meshbackup/backupd/bench/faults"
)

// The classification of trials into the outcome classes of bench/faults,
// from what the bench observed. Every rule looks only at evidence: exit
// statuses, restores compared with manifests, what a check reported. The
// worst finding decides.

// verdicts collects findings, each with its outcome, and gives the worst.
type verdicts struct {
	outcomes []faults.Outcome
	notes    []string
}

func (v *verdicts) add(o faults.Outcome, format string, args ...any) {
	v.outcomes = append(v.outcomes, o)
	v.notes = append(v.notes, fmt.Sprintf(format, args...))
}

func (v *verdicts) worst() (faults.Outcome, string) {
	w := faults.Worst(v.outcomes...)
	// The notes of the worst class first, the rest after.
	var first, rest []string
	for i, n := range v.notes {
		if v.outcomes[i] == w {
			first = append(first, n)
		} else {
			rest = append(rest, n)
		}
	}
	return w, strings.Join(append(first, rest...), "; ")
}

// judgeRestores adds the findings of restores of snapshots the tool
// reported done: one that failed lost data, one that succeeded with
// content other than its manifest's is silent wrong data.
func (v *verdicts) judgeRestores(rs []restoreCheck) {
	for _, r := range rs {
		switch {
		case r.exact():
		case r.Ran:
			v.add(faults.SilentWrongData, "%s", r)
		default:
			v.add(faults.DataLost, "%s", r)
		}
	}
}

// crashEvidence is what a SIGKILL trial of a backup left.
type crashEvidence struct {
	// killed is true when the kill hit the running backup (false: it had
	// finished first).
	killed bool
	// recoveryFailed is the error of the recovery backup that failed even
	// after the human steps, "" when one succeeded.
	recoveryFailed string
	// humanSteps are the manual commands the tool needed (unlock).
	humanSteps []string
	// restores are of every snapshot reported done: the earlier ones, any
	// the killed run finished and the recovery backup's.
	restores []restoreCheck
	// checkFailed is the tool's check's error after the recovery, "" if
	// it passed.
	checkFailed string
}

func classifyCrash(e crashEvidence) (faults.Outcome, string) {
	var v verdicts
	v.judgeRestores(e.restores)
	if e.recoveryFailed != "" {
		v.add(faults.NeededHuman, "the next backup failed: %s", e.recoveryFailed)
	}
	if len(e.humanSteps) > 0 {
		v.add(faults.NeededHuman, "needed %s", strings.Join(e.humanSteps, ", then "))
	}
	if e.checkFailed != "" {
		v.add(faults.NeededHuman, "check failed after the recovery: %s", e.checkFailed)
	}
	switch {
	case len(v.outcomes) > 0:
	case !e.killed:
		v.add(faults.SurvivedExact, "the backup finished before the kill; every snapshot restored exact")
	default:
		v.add(faults.RecoveredAuto, "the next backup succeeded with no human step; every snapshot restored exact; check passed")
	}
	return v.worst()
}

// restoreCrashEvidence is what a SIGKILL trial of a restore left.
type restoreCrashEvidence struct {
	killed bool
	// halfWritten are files at their final paths whose content is not the
	// snapshot's (wrong size or hash) right after the kill.
	halfWritten []string
	// leftovers are entries the snapshot does not hold (temporary files).
	leftovers []string
	// rerun is the restore run again into the same target.
	rerun      restoreCheck
	humanSteps []string
}

func classifyRestoreCrash(e restoreCrashEvidence) (faults.Outcome, string) {
	var v verdicts
	v.judgeRestores([]restoreCheck{e.rerun})
	if len(e.humanSteps) > 0 {
		v.add(faults.NeededHuman, "needed %s", strings.Join(e.humanSteps, ", then "))
	}
	partial := ""
	if len(e.halfWritten) > 0 {
		partial = fmt.Sprintf("; %d half-written files visible under their final names after the kill (first: %s)", len(e.halfWritten), e.halfWritten[0])
	}
	if len(e.leftovers) > 0 {
		partial += fmt.Sprintf("; %d entries not in the snapshot left by the kill (first: %s)", len(e.leftovers), e.leftovers[0])
	}
	switch {
	case len(v.outcomes) > 0:
		v.notes[0] += partial
	case !e.killed:
		v.add(faults.SurvivedExact, "the restore finished before the kill%s", partial)
	default:
		v.add(faults.RecoveredAuto, "a rerun into the same target converged to exact%s", partial)
	}
	return v.worst()
}

// corruptionEvidence is what a trial of damage at rest showed.
type corruptionEvidence struct {
	// detected is true when the full check reported a problem; named
	// when its output named the damaged file or object.
	detected, named bool
	// restores are of the snapshots of the damaged repository.
	restores []restoreCheck
}

func classifyCorruption(e corruptionEvidence) (faults.Outcome, string) {
	var v verdicts
	refused := 0
	for _, r := range e.restores {
		switch {
		case r.Ran && len(r.Diffs) > 0:
			v.add(faults.SilentWrongData, "%s", r)
		case !r.Ran:
			refused++
		}
	}
	check := "the full check did not report it"
	if e.detected {
		check = "the full check reported it"
		if e.named {
			check += ", naming the damaged file"
		} else {
			check += " without naming the damaged file"
		}
	}
	switch {
	case e.detected || refused > 0:
		v.add(faults.DetectedReported, "%s; %d of %d restores refused, the others exact", check, refused, len(e.restores))
	default:
		v.add(faults.SurvivedExact, "%s; every restore exact (the damaged bytes were not needed)", check)
	}
	return v.worst()
}

// bitRotEvidence is what a backup after source bit rot showed.
type bitRotEvidence struct {
	// noticed is true when the tool reported the changed content (exit
	// status, output naming a file, a silent-change count).
	noticed bool
	// older is the restore of the snapshot before the rot (the good
	// version); newer that of the snapshot after, compared with the
	// source without the rot's files.
	older, newer restoreCheck
	// rotInNewer and goodInNewer count the rotted files the newer
	// snapshot holds in their rotted and in their good version.
	rotInNewer, goodInNewer int
}

func classifyBitRot(e bitRotEvidence) (faults.Outcome, string) {
	var v verdicts
	v.judgeRestores([]restoreCheck{e.older, e.newer})
	switch {
	case len(v.outcomes) > 0:
	case e.noticed:
		v.add(faults.DetectedReported, "the backup reported the changed content; the older snapshot restores the good version")
	case e.rotInNewer > 0:
		v.add(faults.SilentWrongData, "the backup stored %d rotted files without a word (the good version only in the older snapshot)", e.rotInNewer)
	default:
		v.add(faults.SurvivedExact, "the backup kept the good version of all %d files (not read again: same size and mtime), without reporting the rot", e.goodInNewer)
	}
	return v.worst()
}

// healthyEvidence is the healthy phase.
type healthyEvidence struct {
	failed  string // a backup or init that failed
	restore *restoreCheck
}

func classifyHealthy(e healthyEvidence) (faults.Outcome, string) {
	var v verdicts
	if e.restore != nil {
		v.judgeRestores([]restoreCheck{*e.restore})
	}
	if e.failed != "" {
		v.add(faults.NeededHuman, "a run failed on a healthy machine: %s", e.failed)
	}
	if len(v.outcomes) == 0 {
		v.add(faults.SurvivedExact, "backups succeeded and the full restore is exact")
	}
	return v.worst()
}
