package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zeebo/blake3"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/bench/workload"
)

// proxyCrashScenario (catalogue 10 and 11) runs a live mesh against each
// tool's backup: while it runs, some proxies append to their access logs
// and have them rotated (access.log renamed to access.log.1, a new
// access.log), others append and crash (workload.Crash: access.log
// truncated and written on, the PEMs and bootstrap.json rewritten in
// place, stats.txt replaced). Every state each file goes through is
// recorded as it is written. Oracles, on the restore of the snapshot:
// each file equals one of the states it had during the backup (an
// unchanged file its content at the start; a log a prefix of what it held;
// a file rewritten in place its old content or a prefix of a new one); no
// line of a rotated proxy's access.log or access.log.1 at the start is
// missing from its restored access.log* files; and whether the run failed
// or went on. The workload without proxies (smallfiles) does not apply.
type proxyCrashScenario struct{}

func (proxyCrashScenario) id() string { return faults.ScenarioProxyCrash }

func (proxyCrashScenario) notApplicable(b *bed) string {
	if b.w.w.name != "mesh" {
		return "the workload has no proxies to crash and no access logs to rotate"
	}
	return ""
}

// liveProxies is how many proxies rotate and how many crash during a
// backup.
func liveProxies(p profile) int {
	if p.name == "full" {
		return 10
	}
	return 4
}

func (proxyCrashScenario) run(ctx context.Context, b *bed) (*faults.Cell, error) {
	r := cellRand(b.fr.cfg.seed, faults.ScenarioProxyCrash, b.tool, b.w.w.name)
	trials := 1
	if b.fr.prof.name == "full" {
		trials = 3
	}
	cell := &faults.Cell{Usage: map[string]faults.Usage{}}
	for _, k := range []struct {
		name, state string
		healthy     *procResult
	}{
		{"first backup", stateInit, b.base.first},
		{"incremental backup", stateHealthy, b.base.change},
	} {
		for range trials {
			tr, err := proxyCrashTrial(ctx, b, r, k.name, k.state, dur(k.healthy), cell)
			if err != nil {
				return nil, err
			}
			b.logf("%-32s %s: %s", tr.Point, tr.Outcome, tr.Note)
			cell.Trials = append(cell.Trials, tr)
		}
	}
	cell.Outcome = faults.Worst(trialOutcomes(cell.Trials)...)
	cell.Verdict = trialsVerdict(cell.Trials)
	return cell, nil
}

// fileStates are the states one path had during a backup.
type fileStates struct {
	// hashes are whole contents it had.
	hashes map[string]bool
	// prefixes are contents it had any prefix of: a log as it grew, a
	// file rewritten in place while the new content was written.
	prefixes [][]byte
	// mayVanish: the path did not exist for a moment (a rotation
	// between the rename and the new file).
	mayVanish bool
}

func (fs *fileStates) holds(content []byte) bool {
	if fs.hashes[hashOf(content)] {
		return true
	}
	for _, p := range fs.prefixes {
		if bytes.HasPrefix(p, content) {
			return true
		}
	}
	return false
}

func hashOf(b []byte) string {
	h := blake3.Sum256(b)
	return hex.EncodeToString(h[:])
}

// liveMesh is the proxies' side of a trial: it appends, rotates and
// crashes, and records every state of every file it touches.
type liveMesh struct {
	root string
	opt  workload.Options
	// dirs are the proxies' directories (relative, slash), by proxy.
	dirs map[int]string
	app  map[int]*workload.Appender
	// logs holds the content of each proxy's current access.log
	// generations as written, by relative path.
	logs   map[string]*[]byte
	states map[string]*fileStates
	// startSeqs are the line numbers in access.log and access.log.1 of
	// each rotated proxy at the start.
	startSeqs map[int][]uint64
	done      []string // what was injected, in order
}

// proxyDirs returns the relative directories of the proxies, by index,
// from the workload's state file.
func proxyDirs(root string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(root, ".workload-state.json"))
	if err != nil {
		return nil, err
	}
	var st struct {
		Proxies []struct {
			Dir string `json:"dir"`
		} `json:"proxies"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("workload state: %w", err)
	}
	var out []string
	for _, p := range st.Proxies {
		out = append(out, p.Dir)
	}
	return out, nil
}

func newLiveMesh(root string, opt workload.Options, rotated, crashed []int, start manifest) (*liveMesh, error) {
	all, err := proxyDirs(root)
	if err != nil {
		return nil, err
	}
	lm := &liveMesh{root: root, opt: opt, dirs: map[int]string{}, app: map[int]*workload.Appender{},
		logs: map[string]*[]byte{}, states: map[string]*fileStates{}, startSeqs: map[int][]uint64{}}
	for _, p := range append(slices.Clone(rotated), crashed...) {
		if p >= len(all) {
			continue
		}
		dir := all[p]
		lm.dirs[p] = dir
		for rel, e := range start {
			if path.Dir(rel) != dir && path.Dir(rel) != dir+"/certs" || e.Type != "file" {
				continue
			}
			st := lm.state(rel)
			st.hashes[e.Hash] = true
			if strings.HasPrefix(path.Base(rel), "access.log") {
				b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
				if err != nil {
					return nil, err
				}
				lm.logs[rel] = &b
				st.prefixes = append(st.prefixes, nil) // filled by record
			}
		}
		a, err := workload.NewAppender(root, opt, p)
		if err != nil {
			return nil, err
		}
		lm.app[p] = a
	}
	for _, p := range rotated {
		var seqs []uint64
		for _, name := range []string{"access.log", "access.log.1"} {
			if l := lm.logs[lm.dirs[p]+"/"+name]; l != nil {
				seqs = append(seqs, lineSeqs(*l)...)
			}
		}
		lm.startSeqs[p] = seqs
	}
	lm.record()
	return lm, nil
}

func (lm *liveMesh) state(rel string) *fileStates {
	st := lm.states[rel]
	if st == nil {
		st = &fileStates{hashes: map[string]bool{}}
		lm.states[rel] = st
	}
	return st
}

// record stores the current content of every log as a state of its path.
func (lm *liveMesh) record() {
	for rel, l := range lm.logs {
		st := lm.state(rel)
		// The log's newest stream is the path's last prefix entry.
		if n := len(st.prefixes); n > 0 && (st.prefixes[n-1] == nil || bytes.HasPrefix(*l, st.prefixes[n-1])) {
			st.prefixes[n-1] = *l
		} else {
			st.prefixes = append(st.prefixes, *l)
		}
	}
}

// grow reads what was appended to access.log of proxy p.
func (lm *liveMesh) grow(p int) error {
	rel := lm.dirs[p] + "/access.log"
	l := lm.logs[rel]
	if l == nil {
		empty := []byte{}
		l = &empty
		lm.logs[rel] = l
	}
	f, err := os.Open(filepath.Join(lm.root, filepath.FromSlash(rel)))
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.ReadAt(buf, int64(len(*l)))
		*l = append(*l, buf[:n]...)
		if err != nil || n == 0 {
			return nil
		}
	}
}

// appendAll appends one line to every live proxy's access.log.
func (lm *liveMesh) appendAll() error {
	for p, a := range lm.app {
		if err := a.Append(1); err != nil {
			return err
		}
		if err := lm.grow(p); err != nil {
			return err
		}
	}
	lm.record()
	return nil
}

// rotate rotates proxy p's logs, as logrotate does.
func (lm *liveMesh) rotate(p int) error {
	if err := lm.app[p].Rotate(); err != nil {
		return err
	}
	dir := lm.dirs[p]
	gen := func(i int) string {
		if i == 0 {
			return dir + "/access.log"
		}
		return dir + "/access.log." + strconv.Itoa(i)
	}
	for i := 5; i >= 1; i-- {
		if l := lm.logs[gen(i-1)]; l != nil {
			c := slices.Clone(*l)
			lm.logs[gen(i)] = &c
			st := lm.state(gen(i))
			st.prefixes = append(st.prefixes, c)
			st.mayVanish = true // created by the rename during the backup
		}
	}
	empty := []byte{}
	lm.logs[gen(0)] = &empty
	st := lm.state(gen(0))
	st.prefixes = append(st.prefixes, empty)
	st.mayVanish = true // between the rename and the new file
	lm.done = append(lm.done, "rotated "+dir)
	return nil
}

// crash crashes proxy p and records the new states of what it rewrote.
func (lm *liveMesh) crash(p int) error {
	if err := workload.Crash(lm.root, lm.opt, p); err != nil {
		return err
	}
	dir := lm.dirs[p]
	rel := dir + "/access.log"
	empty := []byte{}
	lm.logs[rel] = &empty
	lm.state(rel).prefixes = append(lm.state(rel).prefixes, empty)
	for _, name := range []string{"bootstrap.json", "certs/cert-chain.pem", "certs/key.pem", "certs/root-cert.pem", "stats.txt"} {
		b, err := os.ReadFile(filepath.Join(lm.root, filepath.FromSlash(dir+"/"+name)))
		if err != nil {
			return err
		}
		st := lm.state(dir + "/" + name)
		st.hashes[hashOf(b)] = true
		if name != "stats.txt" { // rewritten in place: every prefix was there
			st.prefixes = append(st.prefixes, b)
		}
	}
	lm.done = append(lm.done, "crashed "+dir)
	return nil
}

func (lm *liveMesh) close() error {
	var errs []error
	for _, a := range lm.app {
		errs = append(errs, a.Close())
	}
	return errors.Join(errs...)
}

// lineSeqs returns the seq numbers of the complete lines of a log.
func lineSeqs(b []byte) []uint64 {
	var out []uint64
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, "] seq=")
		if i < 0 {
			continue
		}
		rest := line[i+len("] seq="):]
		if j := strings.IndexByte(rest, ' '); j >= 0 {
			rest = rest[:j]
		}
		if n, err := strconv.ParseUint(rest, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// proxyCrashEvidence is what one backup beside a live mesh showed.
type proxyCrashEvidence struct {
	failed string // the backup's failure, "" if it made a snapshot
	warned bool   // it reported trouble (a warning exit, or files it could not read)
	// recoveryFailed is the next backup's failure, after one that failed.
	recoveryFailed string
	restoreFailed  string
	// inconsistent are restored files equal to no state they had;
	// missing files that existed throughout; lostLines lines of rotated
	// logs missing from the restored pair.
	inconsistent, missing []string
	lostLines             int
	lostFrom              []string
}

func classifyProxyCrash(e proxyCrashEvidence) (faults.Outcome, string) {
	var v verdicts
	bad := func(format string, args ...any) {
		if e.warned {
			v.add(faults.DetectedReported, "%s (the tool warned)", fmt.Sprintf(format, args...))
		} else {
			v.add(faults.SilentWrongData, format, args...)
		}
	}
	if e.restoreFailed != "" {
		v.add(faults.DataLost, "the snapshot did not restore: %s", e.restoreFailed)
	}
	if len(e.inconsistent) > 0 {
		bad("%d files restored with content they never had during the backup (first: %s)", len(e.inconsistent), e.inconsistent[0])
	}
	if len(e.missing) > 0 {
		bad("%d files that existed all through the backup are missing (first: %s)", len(e.missing), e.missing[0])
	}
	if e.lostLines > 0 {
		bad("%d access-log lines present before the backup are in neither restored log (%s)", e.lostLines, strings.Join(e.lostFrom, ", "))
	}
	switch {
	case e.failed != "" && e.recoveryFailed != "":
		v.add(faults.NeededHuman, "the backup failed (%s) and so did the next one (%s)", e.failed, e.recoveryFailed)
	case e.failed != "":
		v.add(faults.RecoveredAuto, "the backup failed (%s); the next one, with the mesh quiet, succeeded", e.failed)
	case len(v.outcomes) == 0:
		v.add(faults.SurvivedExact, "the run went on; every file consistent, no log line lost")
	}
	return v.worst()
}

// proxyCrashTrial runs one backup of kind (from state) while the mesh
// lives, for about expect, and judges its snapshot.
func proxyCrashTrial(ctx context.Context, b *bed, r *rand.Rand, kind, state string, expect time.Duration, cell *faults.Cell) (faults.Trial, error) {
	n := liveProxies(b.fr.prof)
	var rotated, crashed []int
	perm := r.Perm(b.fr.prof.mesh.Proxies)
	for i, p := range perm[:min(2*n, len(perm))] {
		if i%2 == 0 {
			rotated = append(rotated, p)
		} else {
			crashed = append(crashed, p)
		}
	}
	tr := faults.Trial{Point: fmt.Sprintf("%s with %d proxies rotating and %d crashing (healthy %.2fs)", kind, len(rotated), len(crashed), expect.Seconds())}
	if err := b.reset(ctx, state); err != nil {
		return tr, err
	}
	// The source is put back afterwards: keep a copy.
	saved := filepath.Join(b.dir, "src-saved")
	if err := removeTree(saved); err != nil {
		return tr, err
	}
	if err := copyTree(ctx, b.src, saved); err != nil {
		return tr, err
	}
	defer func() {
		if err := removeTree(b.src); err == nil {
			_ = os.Rename(saved, b.src)
		}
	}()
	start := b.srcManifest
	lm, err := newLiveMesh(b.src, b.fr.prof.mesh, rotated, crashed, start)
	if err != nil {
		return tr, err
	}
	// The moments of the rotations and crashes, within the backup's
	// healthy duration.
	type op struct {
		at     time.Duration
		rotate bool
		proxy  int
	}
	var ops []op
	moments := killMoments(r, len(rotated)+len(crashed), max(expect, 50*time.Millisecond))
	for i, p := range rotated {
		ops = append(ops, op{moments[i], true, p})
	}
	for i, p := range crashed {
		ops = append(ops, op{moments[len(rotated)+i], false, p})
	}
	slices.SortFunc(ops, func(a, b op) int { return int(a.at - b.at) })
	var e proxyCrashEvidence
	b.seq++
	inv := b.a.backupCmd(b.src, b.seq)
	var p *procResult
	var runErr error
	exited := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(exited)
		p, runErr = runProc(ctx, inv, 0, b.fr.prof.runLimit)
	})
	began := time.Now()
	var liveErr error
	injected := 0
	t := time.NewTicker(5 * time.Millisecond)
live:
	for {
		select {
		case <-exited:
			break live
		case <-t.C:
		}
		if liveErr = lm.appendAll(); liveErr != nil {
			break
		}
		for len(ops) > 0 && time.Since(began) >= ops[0].at {
			o := ops[0]
			ops = ops[1:]
			if o.rotate {
				liveErr = lm.rotate(o.proxy)
			} else {
				liveErr = lm.crash(o.proxy)
			}
			if liveErr != nil {
				break live
			}
			injected++
		}
	}
	t.Stop()
	wg.Wait()
	if err := lm.close(); liveErr == nil {
		liveErr = err
	}
	if runErr != nil {
		return tr, runErr
	}
	if liveErr != nil {
		return tr, fmt.Errorf("live mesh: %w", liveErr)
	}
	tr.Point += fmt.Sprintf(": %d of %d rotations and crashes during the %.2fs backup", injected, len(rotated)+len(crashed), p.Usage.WallSeconds)
	p, snap, err := b.recordBackup(p, nil, b.src, start, "snapshot of the live mesh")
	if err != nil {
		return tr, err
	}
	e.warned = p.Warning != ""
	if u := cell.Usage[faults.UsageBackup]; p.Usage.WallSeconds > u.WallSeconds {
		cell.Usage[faults.UsageBackup] = p.Usage
	}
	if snap == nil {
		e.failed = p.Failed
		// The next run, the mesh quiet: does it go on by itself?
		pn, s2, err := b.backup(ctx, b.src, start, "backup after the failed one", 0)
		if err != nil {
			return tr, err
		}
		if s2 == nil {
			e.recoveryFailed = pn.Failed
		}
	} else {
		if err := judgeLiveSnapshot(ctx, b, *snap, lm, start, &e, cell); err != nil {
			return tr, err
		}
	}
	tr.Outcome, tr.Note = classifyProxyCrash(e)
	return tr, nil
}

// judgeLiveSnapshot restores snap and compares every file with the states
// it had.
func judgeLiveSnapshot(ctx context.Context, b *bed, snap snapRec, lm *liveMesh, start manifest, e *proxyCrashEvidence, cell *faults.Cell) error {
	target := filepath.Join(b.dir, "restore-live")
	if err := removeTree(target); err != nil {
		return err
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	defer removeTree(target)
	p, err := b.run(ctx, b.a.restoreIDCmd(snap.ID, snap.Src, target), 0)
	if err != nil {
		return err
	}
	cell.Usage[faults.UsageRestore] = p.Usage
	if !p.ok() {
		e.restoreFailed = p.Failed
		return nil
	}
	root := b.a.restoredRoot(target, snap.Src)
	got, err := workload.Manifest(root)
	if err != nil {
		e.restoreFailed = "restored tree unreadable: " + err.Error()
		return nil
	}
	live := func(rel string) bool {
		for _, d := range lm.dirs {
			if strings.HasPrefix(rel, d+"/") {
				return true
			}
		}
		return false
	}
	// Everything the mesh did not touch: as at the start.
	want, have := manifest{}, manifest{}
	for rel, en := range start {
		if st := lm.states[rel]; st == nil {
			want[rel] = en
		}
	}
	for rel, en := range got {
		if st := lm.states[rel]; st == nil && !(live(rel) && strings.HasSuffix(rel, ".tmp")) {
			have[rel] = en
		}
	}
	for _, d := range workload.Diff(want, have, true) {
		if strings.Contains(d, ": missing") {
			e.missing = append(e.missing, d)
		} else {
			e.inconsistent = append(e.inconsistent, d)
		}
	}
	// The files the mesh wrote: one of their states.
	var paths []string
	for rel := range lm.states {
		paths = append(paths, rel)
	}
	slices.Sort(paths)
	for _, rel := range paths {
		st := lm.states[rel]
		if _, ok := got[rel]; !ok {
			if !st.mayVanish {
				e.missing = append(e.missing, rel+": missing")
			}
			continue
		}
		content, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			e.inconsistent = append(e.inconsistent, rel+": unreadable: "+err.Error())
			continue
		}
		if !st.holds(content) {
			e.inconsistent = append(e.inconsistent, fmt.Sprintf("%s: %d bytes equal to none of its states", rel, len(content)))
		}
	}
	// No line of a rotated proxy's logs lost.
	for proxy, seqs := range lm.startSeqs {
		dir := lm.dirs[proxy]
		restored := map[uint64]bool{}
		for rel := range got {
			if path.Dir(rel) == dir && strings.HasPrefix(path.Base(rel), "access.log") {
				content, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
				if err != nil {
					continue
				}
				for _, s := range lineSeqs(content) {
					restored[s] = true
				}
			}
		}
		lost := 0
		for _, s := range seqs {
			if !restored[s] {
				lost++
			}
		}
		if lost > 0 {
			e.lostLines += lost
			e.lostFrom = append(e.lostFrom, fmt.Sprintf("%d of %d lines of %s", lost, len(seqs), dir))
		}
	}
	slices.Sort(e.missing)
	slices.Sort(e.inconsistent)
	return nil
}
