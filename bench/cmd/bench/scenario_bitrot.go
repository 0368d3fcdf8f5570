package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/bench/workload"
)

// sourceBitRotScenario flips one bit in each of a few source files after
// the healthy phase, keeping their size and putting back their mtime and
// atime (the ctime changes: user space cannot set it), backs up again and
// asks: did the tool say so (exit status, output naming a file, backupd's
// silent-change count)? Which version does the new snapshot hold? Does
// the older snapshot still restore the good version? The files get their
// good content back afterwards.
type sourceBitRotScenario struct{}

func (sourceBitRotScenario) id() string                { return faults.ScenarioSourceBitRot }
func (sourceBitRotScenario) notApplicable(*bed) string { return "" }

// rotted is one source file the scenario damaged.
type rotted struct {
	rel          string
	good         []byte
	atime, mtime time.Time
}

func (sourceBitRotScenario) run(ctx context.Context, b *bed) (cell *faults.Cell, err error) {
	r := cellRand(b.fr.cfg.seed, faults.ScenarioSourceBitRot, b.tool, b.w.w.name)
	if err := b.reset(ctx, stateHealthy); err != nil {
		return nil, err
	}
	older := b.snaps[len(b.snaps)-1]
	// Candidates: files the source and the older snapshot hold alike.
	var cands []string
	for p, e := range b.srcManifest {
		if o, ok := older.Manifest[p]; ok && e.Type == "file" && e.Size >= 64 && o.Hash == e.Hash {
			cands = append(cands, p)
		}
	}
	slices.Sort(cands)
	n := min(b.fr.prof.bitRotFiles, len(cands))
	if n == 0 {
		return nil, fmt.Errorf("no file to rot in %s", b.src)
	}
	var rots []rotted
	defer func() {
		// Put the good content and times back, whatever happened.
		for _, rt := range rots {
			path := filepath.Join(b.src, filepath.FromSlash(rt.rel))
			werr := os.WriteFile(path, rt.good, 0o644) // the mode stays: the file exists
			if werr == nil {
				werr = os.Chtimes(path, rt.atime, rt.mtime)
			}
			if werr != nil && err == nil {
				cell, err = nil, fmt.Errorf("put back the rotted file: %w", werr)
			}
		}
	}()
	for _, i := range r.Perm(len(cands))[:n] {
		rt, err := rotFile(b.src, cands[i], r.Int64N(b.srcManifest[cands[i]].Size), uint(r.IntN(8)))
		if err != nil {
			return nil, err
		}
		rots = append(rots, rt)
	}
	rottedM, err := workload.Manifest(b.src)
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", b.src, err)
	}
	syscall.Sync()
	var e bitRotEvidence
	p, newer, err := b.backup(ctx, b.src, rottedM, "snapshot after the rot", 0)
	if err != nil {
		return nil, err
	}
	cell = &faults.Cell{Usage: map[string]faults.Usage{faults.UsageBackup: p.Usage}}
	tr := faults.Trial{Point: fmt.Sprintf("%d files with one bit flipped, size and mtime kept", n)}
	e.noticed = bitRotNoticed(p, rots)
	if e.noticed {
		tr.TimeToDetectSeconds = fsecs(p.Usage.WallSeconds)
	}
	if e.older, err = b.restoreFresh(ctx, older, "older"); err != nil {
		return nil, err
	}
	cell.Usage[faults.UsageRestore] = e.older.Usage
	if newer == nil {
		e.newer = restoreCheck{Label: "the backup after the rot", Failed: p.Failed}
	} else if e.newer, err = restoreNewer(ctx, b, *newer, older.Manifest, rots, &e); err != nil {
		return nil, err
	}
	tr.Outcome, tr.Note = classifyBitRot(e)
	tr.Note += fmt.Sprintf("; the new snapshot holds %d rotted and %d good versions", e.rotInNewer, e.goodInNewer)
	b.logf("%-32s %s: %s", tr.Point, tr.Outcome, tr.Note)
	cell.Trials = []faults.Trial{tr}
	cell.Outcome, cell.Verdict = tr.Outcome, tr.Note
	cell.TimeToDetectSeconds = tr.TimeToDetectSeconds
	return cell, nil
}

// rotFile flips bit of the byte at off of the file rel under src,
// keeping its size, atime and mtime.
func rotFile(src, rel string, off int64, bit uint) (rotted, error) {
	path := filepath.Join(src, filepath.FromSlash(rel))
	fi, err := os.Stat(path)
	if err != nil {
		return rotted{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return rotted{}, fmt.Errorf("%s: no stat_t", path)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		return rotted{}, err
	}
	rt := rotted{rel: rel, good: good, atime: time.Unix(st.Atim.Sec, st.Atim.Nsec), mtime: fi.ModTime()}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return rt, err
	}
	if _, err := f.WriteAt([]byte{good[off] ^ 1<<bit}, off); err != nil {
		f.Close()
		return rt, err
	}
	if err := f.Close(); err != nil {
		return rt, err
	}
	return rt, os.Chtimes(path, rt.atime, rt.mtime)
}

// bitRotNoticed reports whether a backup said anything about the rotted
// files: a failed or warning exit, a rotted file's path in its output, or
// a silent-change count above zero in its JSON summary (backupd's).
func bitRotNoticed(p *procResult, rots []rotted) bool {
	if !p.ok() || p.Warning != "" {
		return true
	}
	var sum struct {
		SilentChanges int `json:"silent_changes"`
	}
	if s := jsonSummary(p.Stdout); s != nil && json.Unmarshal(s, &sum) == nil && sum.SilentChanges > 0 {
		return true
	}
	out := p.output()
	for _, rt := range rots {
		if strings.Contains(out, rt.rel) {
			return true
		}
	}
	return false
}

// restoreNewer restores the snapshot made after the rot and compares it
// with its manifest, accepting either version of each rotted file (whose
// versions it counts in e).
func restoreNewer(ctx context.Context, b *bed, s snapRec, good manifest, rots []rotted, e *bitRotEvidence) (restoreCheck, error) {
	target := b.checkTarget("newer")
	if err := removeTree(target); err != nil {
		return restoreCheck{}, err
	}
	_, rc, err := b.restore(ctx, s, target, 0)
	if err != nil || !rc.Ran {
		return rc, err
	}
	got, err := workload.Manifest(b.a.restoredRoot(target, s.Src))
	if err != nil {
		rc.Diffs = []string{fmt.Sprintf("restored tree unreadable: %v", err)}
		return rc, removeTree(target)
	}
	want := maps.Clone(s.Manifest)
	for _, rt := range rots {
		g := got[rt.rel]
		switch g.Hash {
		case s.Manifest[rt.rel].Hash:
			e.rotInNewer++
		case good[rt.rel].Hash:
			e.goodInNewer++
			want[rt.rel] = good[rt.rel]
		}
	}
	rc.Diffs = workload.Diff(want, got, true)
	return rc, removeTree(target)
}
