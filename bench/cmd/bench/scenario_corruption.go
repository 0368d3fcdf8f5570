package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/meshbackup/backupd/bench/faults"
)

// repoCorruptionScenario damages the repository after the healthy phase,
// each trial on a fresh copy of it (the saved state put back): a bit
// flipped in a data pack, a data pack truncated, a bit flipped in an index
// file and one in a snapshot file, each file found by the tool's layout
// (adapter.repoFiles). It measures whether the full check (reading all
// data) reports it and names the damaged file, whether restores of every
// snapshot refuse or write bad data with success (compared with their
// manifests), and the time of the full check and of the tool's partial
// verification on the undamaged repository.
type repoCorruptionScenario struct{}

func (repoCorruptionScenario) id() string                { return faults.ScenarioRepoCorruption }
func (repoCorruptionScenario) notApplicable(*bed) string { return "" }

// damageKind is one kind of damage at rest.
type damageKind struct {
	name   string
	file   repoFileKind
	damage func(path string, r *rand.Rand) (string, error)
}

func damageKinds() []damageKind {
	return []damageKind{
		{"bit flip in a data pack", fileDataPack, flipBit},
		{"truncation of a data pack", fileDataPack, truncateFile},
		{"bit flip in an index file", fileIndex, flipBit},
		{"bit flip in a snapshot file", fileSnapshot, flipBit},
	}
}

// flipBit flips one bit at a random offset of the file.
func flipBit(path string, r *rand.Rand) (string, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if fi.Size() == 0 {
		return "", fmt.Errorf("%s is empty", path)
	}
	off, bit := r.Int64N(fi.Size()), uint(r.IntN(8))
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return "", err
	}
	b[0] ^= 1 << bit
	if _, err := f.WriteAt(b, off); err != nil {
		return "", err
	}
	return fmt.Sprintf("bit %d of byte %d of %d", bit, off, fi.Size()), f.Close()
}

// truncateFile cuts the file to between a quarter and three quarters of
// its size.
func truncateFile(path string, r *rand.Rand) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	n := fi.Size()/4 + r.Int64N(max(1, fi.Size()/2))
	return fmt.Sprintf("cut to %d of %d bytes", n, fi.Size()), os.Truncate(path, n)
}

func (repoCorruptionScenario) run(ctx context.Context, b *bed) (*faults.Cell, error) {
	r := cellRand(b.fr.cfg.seed, faults.ScenarioRepoCorruption, b.tool, b.w.w.name)
	cell := &faults.Cell{Usage: map[string]faults.Usage{}, Detection: &faults.Detection{}}
	// The checks' cost, on the undamaged repository.
	if err := b.reset(ctx, stateHealthy); err != nil {
		return nil, err
	}
	// Every trial starts from a copy of this state, so its files are
	// listed once, before any run (restic's listing runs a command per
	// index file).
	files, err := b.a.repoFiles(ctx)
	if err != nil {
		return nil, err
	}
	full, err := b.runTimed(ctx, b.a.checkCmd(true))
	if err != nil {
		return nil, err
	}
	if !full.ok() {
		return nil, fmt.Errorf("the full check fails on the undamaged repository: %s", full.Failed)
	}
	cell.Detection.FullCheckSeconds = full.Usage.WallSeconds
	if inv, ok := b.a.checkSubsetCmd(); ok {
		sub, err := b.runTimed(ctx, inv)
		if err != nil {
			return nil, err
		}
		if !sub.ok() {
			return nil, fmt.Errorf("the 1/%d check fails on the undamaged repository: %s", subsetShare, sub.Failed)
		}
		cell.Detection.IncrementalCheckSeconds = fsecs(sub.Usage.WallSeconds)
	}
	var detectTimes []float64
	for _, k := range damageKinds() {
		if b.fr.prof.damages != nil && !slices.Contains(b.fr.prof.damages, k.name) {
			continue
		}
		for range b.fr.prof.corruptTrials {
			if err := b.reset(ctx, stateHealthy); err != nil {
				return nil, err
			}
			cands := files[k.file]
			if len(cands) == 0 {
				cell.Trials = append(cell.Trials, faults.Trial{Point: k.name, Outcome: faults.NotApplicable,
					Note: fmt.Sprintf("%s keeps no %s files of its own", b.tool, k.file)})
				break // the same for every trial of the kind
			}
			rel := cands[r.IntN(len(cands))]
			how, err := k.damage(filepath.Join(b.a.repoDir(), rel), r)
			if err != nil {
				return nil, fmt.Errorf("damage %s: %w", rel, err)
			}
			tr := faults.Trial{Point: fmt.Sprintf("%s: %s (%s)", k.name, rel, how)}
			var e corruptionEvidence
			full, err := b.run(ctx, b.a.checkCmd(true), 0)
			if err != nil {
				return nil, err
			}
			// A check stopped at the bench's time limit reported nothing.
			e.detected = !full.ok() && !full.TimedOut
			e.named = e.detected && namesFile(full.output(), rel)
			if e.detected {
				tr.TimeToDetectSeconds = fsecs(full.Usage.WallSeconds)
				detectTimes = append(detectTimes, full.Usage.WallSeconds)
			}
			restored := map[string]bool{}
			for i, s := range b.snaps {
				// A snapshot with the content of one restored already
				// (the no-change backup's) needs the same data: restored
				// again only when snapshot files are damaged.
				if d := manifestDigest(s.Manifest); restored[d] && k.file != fileSnapshot {
					continue
				} else {
					restored[d] = true
				}
				rc, err := b.restoreFresh(ctx, s, "damaged-"+strconv.Itoa(i))
				if err != nil {
					return nil, err
				}
				if u := cell.Usage[faults.UsageRestore]; rc.Usage.WallSeconds > u.WallSeconds {
					cell.Usage[faults.UsageRestore] = rc.Usage
				}
				e.restores = append(e.restores, rc)
				switch {
				case !rc.Ran:
					cell.Detection.RestoreRefused++
				case len(rc.Diffs) > 0:
					cell.Detection.RestoreSilent++
				}
			}
			cell.Detection.Injected++
			if e.detected {
				cell.Detection.Detected++
			}
			if e.named {
				cell.Detection.Named++
			}
			tr.Outcome, tr.Note = classifyCorruption(e)
			switch {
			case full.TimedOut:
				tr.Note += "; the full check " + full.Failed
			case e.detected:
				tr.Note += "; check said: " + lastLines(full.output(), 2)
			}
			b.logf("%-32s %s: %s", k.name, tr.Outcome, tr.Note)
			cell.Trials = append(cell.Trials, tr)
		}
	}
	if len(detectTimes) > 0 {
		cell.TimeToDetectSeconds = fsecs(slices.Max(detectTimes))
	}
	d := cell.Detection
	cell.Outcome = faults.Worst(trialOutcomes(cell.Trials)...)
	cell.Verdict = fmt.Sprintf("%s; full check reported %d of %d injections and named %d; restores: %d refused, %d wrote bad data with success; undamaged, the full check takes %.2f s",
		trialsVerdict(applicable(cell.Trials)), d.Detected, d.Injected, d.Named, d.RestoreRefused, d.RestoreSilent, d.FullCheckSeconds)
	if d.IncrementalCheckSeconds != nil {
		cell.Verdict += fmt.Sprintf(", 1/%d check %.2f s", subsetShare, *d.IncrementalCheckSeconds)
	}
	return cell, nil
}

// applicable leaves out trials that were not applicable.
func applicable(ts []faults.Trial) []faults.Trial {
	return slices.DeleteFunc(slices.Clone(ts), func(t faults.Trial) bool { return t.Outcome == faults.NotApplicable })
}

// namesFile reports whether a check's output names the repository file
// rel: its name, the first 8 digits of a hex name (tools print short
// IDs), borg's "segment N" or the blob ID of kopia's sharded file.
func namesFile(out, rel string) bool {
	base := filepath.Base(rel)
	cands := []string{base}
	if id := strings.TrimSuffix(base, filepath.Ext(base)); hexID.MatchString(id) {
		cands = append(cands, id[:8])
	}
	if borgSegment.MatchString(base) {
		cands = append(cands, "segment "+base, "segment="+base)
	}
	if strings.HasSuffix(rel, ".f") {
		// kopia's sharded blob: the ID is the path without separators.
		id := strings.ReplaceAll(strings.TrimSuffix(rel, ".f"), string(filepath.Separator), "")
		cands = append(cands, id)
		if i := strings.Index(id, "-"); i > 0 {
			cands = append(cands, id[:i])
		}
	}
	return containsAny(out, cands...)
}
