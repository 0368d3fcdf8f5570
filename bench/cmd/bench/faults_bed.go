package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/bench/workload"
)

// bed is one tool on one workload: a working source (src, a copy of the
// workload's set) and the tool's home (repository, caches,
// configuration), both at fixed paths, since tools remember paths (kopia's
// configuration names its repository, restic and borg find a parent
// snapshot by the source path). Scenarios start from the saved states of
// the baseline (reset) and record every snapshot the tool reported with
// the manifest of the tree it was made from: the oracle every restore is
// compared with.
type bed struct {
	fr   *faultRun
	w    *preparedWorkload
	tool string
	dir  string
	home string
	// src is the working source; srcManifest its content now.
	src         string
	srcManifest manifest
	a           adapter
	// seq numbers backups (borg's archive names), never reused.
	seq int
	// changeStep counts the changes applied to src.
	changeStep int
	// snaps are the snapshots in the home now, oldest first.
	snaps  []snapRec
	states map[string]*bedState
	base   baseline
}

// snapRec is a snapshot a tool reported done, with the manifest of the
// tree it was made from.
type snapRec struct {
	ID    string
	Label string
	// Src is the directory backed up (restic and borg restore under it).
	Src      string
	Manifest manifest
}

// bedState is a saved copy of the tool's home.
type bedState struct {
	dir   string
	snaps []snapRec
	// bytes is the repository's size in that state.
	bytes int64
}

// baseline is the healthy phase of a bed: the runs and what they left.
type baseline struct {
	init, first, noChange, change, restore *procResult
	restoreCheck                           restoreCheck
	// firstBytes and changeBytes are the repository's size after the
	// first and after the 1% change backup.
	firstBytes, changeBytes int64
	err                     error
}

// The saved states of the baseline.
const (
	stateInit     = "init"      // an empty repository
	stateFirst    = "first"     // after the first backup
	stateNoChange = "no-change" // after the no-change backup
	stateHealthy  = "healthy"   // after the 1% change backup: three snapshots
)

func newBed(_ context.Context, fr *faultRun, pw *preparedWorkload, tool, dir string) (*bed, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("remove %s: %w", dir, err)
	}
	b := &bed{fr: fr, w: pw, tool: tool, dir: dir, home: filepath.Join(dir, "home"), src: filepath.Join(dir, "src"),
		states: map[string]*bedState{}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	a, err := newAdapter(tool, fr.bins[tool], b.home)
	if err != nil {
		return nil, err
	}
	b.a = a
	return b, nil
}

// logf reports progress detail of the bed.
func (b *bed) logf(format string, args ...any) {
	b.fr.progress.logf("%-8s %-10s "+format, append([]any{b.tool, b.w.w.name}, args...)...)
}

// run runs one command of the tool, killed killAfter after its start when
// that is positive.
func (b *bed) run(ctx context.Context, inv invocation, killAfter time.Duration) (*procResult, error) {
	return runProc(ctx, inv, killAfter, b.fr.prof.runLimit)
}

// runTimed is run for the measured runs of the baseline: the page
// cache's dirty data is flushed before and after, so that no other run's
// writeback is billed to it and its own is (sync waits for the whole
// machine's: on a busy machine it can take a while, so the other runs
// skip it).
func (b *bed) runTimed(ctx context.Context, inv invocation) (*procResult, error) {
	syscall.Sync()
	p, err := runProc(ctx, inv, 0, b.fr.prof.runLimit)
	syscall.Sync()
	return p, err
}

// runUnlocking runs inv; when it fails because of a lock, it runs the
// tool's unlock (a human step, added to steps) and inv once more (the
// result's usage is then that of all three runs).
func (b *bed) runUnlocking(ctx context.Context, inv invocation, steps *[]string) (*procResult, error) {
	p, err := b.run(ctx, inv, 0)
	if err != nil || p.ok() || !b.a.lockError(p.output()) {
		return p, err
	}
	un, ok := b.a.unlockCmd()
	if !ok {
		return p, nil
	}
	*steps = append(*steps, fmt.Sprintf("%s (%s refused: %s)", commandWords(b.tool, un), commandWords(b.tool, inv), lastLines(p.output(), 2)))
	pu, err := b.run(ctx, un, 0)
	if err != nil {
		return nil, err
	}
	again, err := b.run(ctx, inv, 0)
	if err != nil {
		return nil, err
	}
	// The cost of getting the run done: the refused try, the unlock and
	// the run.
	again.Usage = addUsage(addUsage(p.Usage, pu.Usage), again.Usage)
	return again, nil
}

// commandWords is a command as a human would type it: the tool and its
// arguments, without the paths of the bench's directories.
func commandWords(tool string, inv invocation) string {
	words := []string{tool}
	for _, a := range inv.args {
		if strings.HasPrefix(a, "/") {
			a = "REPO"
		}
		words = append(words, a)
	}
	return strings.Join(words, " ")
}

// backup backs up src (whose content is m) and, when it succeeded,
// records the snapshot. killAfter > 0 kills it that long after its start.
func (b *bed) backup(ctx context.Context, src string, m manifest, label string, killAfter time.Duration) (*procResult, *snapRec, error) {
	b.seq++
	p, err := b.run(ctx, b.a.backupCmd(src, b.seq), killAfter)
	return b.recordBackup(p, err, src, m, label)
}

// backupUnlocking is backup through runUnlocking (never killed).
func (b *bed) backupUnlocking(ctx context.Context, src string, m manifest, label string, steps *[]string) (*procResult, *snapRec, error) {
	b.seq++
	p, err := b.runUnlocking(ctx, b.a.backupCmd(src, b.seq), steps)
	return b.recordBackup(p, err, src, m, label)
}

func (b *bed) recordBackup(p *procResult, err error, src string, m manifest, label string) (*procResult, *snapRec, error) {
	if err != nil || !p.ok() {
		return p, nil, err
	}
	id, err := b.a.snapshotID(p, b.seq)
	if err != nil {
		p.Failed = fmt.Sprintf("%v: %v", errNoSnapshot, err)
		return p, nil, nil
	}
	s := snapRec{ID: id, Label: label, Src: src, Manifest: m}
	b.snaps = append(b.snaps, s)
	return p, &s, nil
}

// sameSnapshot reports whether two snapshot IDs name the same snapshot:
// equal, or one a prefix of the other (restic prints short IDs after a
// backup and full ones in its listing).
func sameSnapshot(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return a != "" && strings.HasPrefix(b, a)
}

// restoreCheck is a restore compared with the manifest of the snapshot it
// restored.
type restoreCheck struct {
	Label string
	// Ran is true when the restore reported success.
	Ran bool
	// Failed is the failed restore's error.
	Failed string
	// Diffs are the differences from the manifest (of a restore that ran
	// or one that failed, when its target could be read).
	Diffs []string
	Usage faults.Usage
}

// exact reports whether the restore succeeded and matched.
func (r restoreCheck) exact() bool { return r.Ran && len(r.Diffs) == 0 }

// String says what the restore did, in words.
func (r restoreCheck) String() string {
	switch {
	case r.exact():
		return r.Label + " restored exact"
	case r.Ran:
		return fmt.Sprintf("%s restored with success but differs in %d entries (first: %s)", r.Label, len(r.Diffs), r.Diffs[0])
	default:
		return fmt.Sprintf("%s did not restore: %s", r.Label, r.Failed)
	}
}

// restore restores s into target (created if missing) and compares the
// restored tree with s's manifest; a restore killed by killAfter is not
// compared (the caller looks at what it left).
func (b *bed) restore(ctx context.Context, s snapRec, target string, killAfter time.Duration) (*procResult, restoreCheck, error) {
	rc := restoreCheck{Label: s.Label}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return nil, rc, fmt.Errorf("create restore target: %w", err)
	}
	p, err := b.run(ctx, b.a.restoreIDCmd(s.ID, s.Src, target), killAfter)
	if err != nil {
		return p, rc, err
	}
	rc.Usage = p.Usage
	if p.Killed {
		return p, rc, nil
	}
	rc.Ran = p.ok()
	rc.Failed = p.Failed
	rc.Diffs = compareTree(s.Manifest, b.a.restoredRoot(target, s.Src))
	return p, rc, nil
}

// compareTree returns the differences of the tree at root from want
// (sockets aside: no tool restores them); a tree that cannot be read is
// one difference.
func compareTree(want manifest, root string) []string {
	got, err := workload.Manifest(root)
	if err != nil {
		return []string{fmt.Sprintf("restored tree unreadable: %v", err)}
	}
	return workload.Diff(want, got, true)
}

// checkTarget is where a restore that verifies a snapshot goes: in the
// run's checkDir (faultRun.checkDir), under the bed's name.
func (b *bed) checkTarget(name string) string {
	if b.fr.checkDir == "" {
		return filepath.Join(b.dir, "restore-"+name)
	}
	return filepath.Join(b.fr.checkDir, b.w.w.name, b.tool, "restore-"+name)
}

// restoreFresh restores s into a new directory in the run's checkDir,
// compares it and removes it.
func (b *bed) restoreFresh(ctx context.Context, s snapRec, name string) (restoreCheck, error) {
	target := b.checkTarget(name)
	if err := os.RemoveAll(target); err != nil {
		return restoreCheck{}, err
	}
	_, rc, err := b.restore(ctx, s, target, 0)
	if err != nil {
		return rc, err
	}
	return rc, removeTree(target)
}

// removeTree removes a tree, making read-only directories writable first.
func removeTree(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// save keeps a copy of the home as state name.
func (b *bed) save(ctx context.Context, name string) error {
	dir := filepath.Join(b.dir, "states", name)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := cpA(ctx, b.home, dir); err != nil {
		return err
	}
	n, err := repoBytes(ctx, b.a)
	if err != nil {
		return err
	}
	b.states[name] = &bedState{dir: dir, snaps: append([]snapRec(nil), b.snaps...), bytes: n}
	return nil
}

// reset puts the home back to state name.
func (b *bed) reset(ctx context.Context, name string) error {
	st, ok := b.states[name]
	if !ok {
		return fmt.Errorf("no saved state %q", name)
	}
	if err := removeTree(b.home); err != nil {
		return err
	}
	if err := cpA(ctx, st.dir, b.home); err != nil {
		return err
	}
	b.snaps = append([]snapRec(nil), st.snaps...)
	syscall.Sync()
	return nil
}

// changeSource applies the next 1% change to src and updates its manifest.
func (b *bed) changeSource(ctx context.Context) error {
	b.changeStep++
	if err := b.w.w.change(ctx, b.src, b.changeStep); err != nil {
		return err
	}
	m, err := workload.Manifest(b.src)
	if err != nil {
		return fmt.Errorf("manifest of %s: %w", b.src, err)
	}
	b.srcManifest = m
	return nil
}

// listed returns the IDs of the snapshots the tool lists now.
func (b *bed) listed(ctx context.Context) ([]string, error) {
	p, err := b.run(ctx, b.a.listCmd(), 0)
	if err != nil {
		return nil, err
	}
	if !p.ok() {
		return nil, fmt.Errorf("list snapshots: %s", p.Failed)
	}
	return b.a.listSnapshots(p.Stdout)
}

// prepareBaseline runs the healthy phase: a copy of the set as the working
// source, init, first backup, no-change backup, the 1% change and its
// backup, and a full restore of that last snapshot, saving the home after
// each backup. A failure is kept in b.base.err.
func (b *bed) prepareBaseline(ctx context.Context) error {
	b.base.err = b.baseline(ctx)
	if b.base.err != nil {
		b.logf("healthy phase FAILED: %v", b.base.err)
	}
	return b.base.err
}

func (b *bed) baseline(ctx context.Context) error {
	if err := copyTree(ctx, b.w.dir, b.src); err != nil {
		return err
	}
	b.srcManifest = b.w.manifest
	syscall.Sync()
	p, err := b.run(ctx, b.a.initCmd(), 0)
	if err != nil {
		return err
	}
	if b.base.init = p; !p.ok() {
		return fmt.Errorf("init: %s", p.Failed)
	}
	if err := b.save(ctx, stateInit); err != nil {
		return err
	}
	type step struct {
		label, from, state string
		change             bool
		save               **procResult
	}
	for _, st := range []step{
		{"snapshot 1 (first backup)", stateInit, stateFirst, false, &b.base.first},
		{"snapshot 2 (no-change backup)", stateFirst, stateNoChange, false, &b.base.noChange},
		{"snapshot 3 (1% change backup)", stateNoChange, stateHealthy, true, &b.base.change},
	} {
		if st.change {
			if err := b.changeSource(ctx); err != nil {
				return err
			}
		}
		// healthyBackups runs, each from the step's starting state: the
		// median by wall time is the figure; the last run's repository
		// is the step's state.
		var runs []*procResult
		for i := range healthyBackups {
			if i > 0 {
				if err := b.reset(ctx, st.from); err != nil {
					return err
				}
			}
			b.seq++
			p, err := b.runTimed(ctx, b.a.backupCmd(b.src, b.seq))
			p, _, err = b.recordBackup(p, err, b.src, b.srcManifest, st.label)
			if err != nil {
				return err
			}
			if !p.ok() {
				*st.save = p
				return fmt.Errorf("%s: %s", st.label, p.Failed)
			}
			runs = append(runs, p)
		}
		slices.SortFunc(runs, func(x, y *procResult) int { return cmp.Compare(x.Usage.WallSeconds, y.Usage.WallSeconds) })
		p := runs[len(runs)/2]
		*st.save = p
		b.logf("%-32s %7.2fs wall %7.2fs CPU (median of %d)", st.label, p.Usage.WallSeconds, p.Usage.CPUSeconds, len(runs))
		if err := b.save(ctx, st.state); err != nil {
			return err
		}
	}
	b.base.firstBytes = b.states[stateFirst].bytes
	b.base.changeBytes = b.states[stateHealthy].bytes
	// The full restore, three times into a fresh target: the median run
	// by wall time is the figure (one run on a shared machine can be
	// twice as slow as the next); every one is checked.
	last := b.snaps[len(b.snaps)-1]
	target := filepath.Join(b.dir, "restore-healthy")
	type restoreRun struct {
		p  *procResult
		rc restoreCheck
	}
	var runs []restoreRun
	for range healthyRestores {
		syscall.Sync()
		p, rc, err := b.restore(ctx, last, target, 0)
		if err != nil {
			return err
		}
		if err := removeTree(target); err != nil {
			return err
		}
		if !rc.Ran {
			return fmt.Errorf("full restore: %s", rc.Failed)
		}
		runs = append(runs, restoreRun{p, rc})
		if !rc.exact() {
			break // the first wrong restore is the finding
		}
	}
	slices.SortFunc(runs, func(x, y restoreRun) int { return cmp.Compare(x.p.Usage.WallSeconds, y.p.Usage.WallSeconds) })
	mid := runs[len(runs)/2]
	for _, r := range runs {
		if !r.rc.exact() {
			mid = r
		}
	}
	b.base.restore, b.base.restoreCheck = mid.p, mid.rc
	b.logf("%-32s %7.2fs wall (median of %d): %s", "full restore", mid.p.Usage.WallSeconds, len(runs), mid.rc)
	return nil
}

// healthyRestores is how many times the healthy phase restores the
// newest snapshot, healthyBackups how many times it runs each of its
// backups (from the same state); the median run is the figure.
const healthyRestores, healthyBackups = 3, 3

// dur is a run's wall time as a duration.
func dur(p *procResult) time.Duration {
	if p == nil {
		return 0
	}
	return time.Duration(p.Usage.WallSeconds * float64(time.Second))
}
