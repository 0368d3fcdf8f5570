package enginetest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/crashfs"
	"github.com/meshbackup/backupd/backupd/backend/fault"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/checker"
	"github.com/meshbackup/backupd/backupd/prune"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/bench/workload"
)

// Scenario 1, in process and deterministic (as borg's tests do): the
// backend "crashes" at every mutating operation of a backup in turn. After
// each crash: check passes, every earlier snapshot restores byte-exact, and
// the next backup succeeds, reusing the packs the crashed one left.
func TestCrashAtEveryBackendWrite(t *testing.T) {
	e := newEnv(t, smallVolume())
	// The crashed "process" is this one, still alive: let its locks go
	// stale at once, as a dead process's would.
	e.opt.StaleAfter = time.Nanosecond
	base := e.be
	e.mustBackup()
	if err := workload.Mutate(e.src, e.wl, 2); err != nil {
		t.Fatal(err)
	}
	// Count the writes of one incremental backup on a throwaway copy.
	probe := fault.NewCrasher(1 << 30)
	e.be = &fault.Backend{Backend: base, Hook: probe.Hook}
	if err := workload.Mutate(e.src, e.wl, 0); err != nil {
		t.Fatal(err)
	}
	total := countWrites(t, e)
	e.be = base
	if total < 5 {
		t.Fatalf("an incremental backup made only %d writes; the test would prove little", total)
	}
	for n := 0; n < total; n++ {
		if err := workload.Mutate(e.src, e.wl, 1); err != nil {
			t.Fatal(err)
		}
		c := fault.NewCrasher(n)
		e.be = &fault.Backend{Backend: base, Hook: c.Hook}
		_, _, err := e.backup()
		e.be = base
		if err == nil {
			continue // the crash point lies past this backup's writes
		}
		if !c.Crashed() {
			t.Fatalf("crash point %d: backup failed without a crash: %v", n, err)
		}
		e.assertCheckOK(false)
		sn, a := e.mustBackup()
		if a.Stats.FilesChanged.Load()+a.Stats.FilesNew.Load() == 0 {
			t.Fatalf("crash point %d: the backup after the crash saw no changes", n)
		}
		e.assertRestores(sn)
	}
	e.assertAllRestore()
	e.assertCheckOK(true)
}

// countWrites runs one backup that records but does not fail.
func countWrites(t *testing.T, e *env) int {
	t.Helper()
	var n atomic.Int64
	mb := e.be.(*fault.Backend).Backend
	e.be = &fault.Backend{Backend: mb, Hook: func(op fault.Op, h backend.Handle) error {
		if op == fault.OpSave || op == fault.OpRemove {
			n.Add(1)
		}
		return nil
	}}
	e.mustBackup()
	return int(n.Load())
}

// Resume: a backup killed after its packs were stored but before its index
// leaves packs that the next backup adopts instead of uploading again.
func TestInterruptedBackupResumes(t *testing.T) {
	e := newEnv(t, workload.Options{Proxies: 6, ConsulServers: 1, Scale: 0.05, Seed: 3})
	base := e.be
	var packs atomic.Int64
	e.be = &fault.Backend{Backend: base, Hook: func(op fault.Op, h backend.Handle) error {
		if op == fault.OpSave && h.Type == backend.IndexFile {
			return fault.ErrCrashed
		}
		if op == fault.OpSave && h.Type == backend.PackFile {
			packs.Add(1)
		}
		return nil
	}}
	e.opt.IndexEveryPacks = 1 << 20 // never an index before the end
	if _, _, err := e.backup(); err == nil {
		t.Fatal("backup succeeded without its index")
	}
	e.be = base
	stored := len(packFiles(t, e.dir))
	if stored < 3 || packs.Load() != int64(stored) {
		t.Fatalf("setup: %d packs stored (%d saves)", stored, packs.Load())
	}
	e.opt.StaleAfter = time.Nanosecond
	sn, a := e.mustBackup()
	if a.Stats.BlobsWritten.Load() > 2 { // at most the root and one changed tree
		t.Fatalf("resumed backup wrote %d blobs again; the interrupted run's packs were not reused", a.Stats.BlobsWritten.Load())
	}
	e.assertRestores(sn)
	e.assertCheckOK(true)
}

// Scenario 3: the repository host loses every unsynced write. Every
// snapshot a backup reported as done survives; check passes.
func TestLostUnsyncedWrites(t *testing.T) {
	wl := smallVolume()
	src := filepath.Join(t.TempDir(), "vol")
	if err := workload.Generate(src, wl); err != nil {
		t.Fatal(err)
	}
	cfs := crashfs.New()
	be, err := local.Create("/repo", local.Options{FS: cfs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repository.Init(t.Context(), be, repotest.Password, repotest.Options()); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, be: be, src: src, wl: wl, aopt: archiver.Options{Policy: "mesh"}, oracle: map[repository.ID]map[string]workload.Entry{}}
	e.opt.TempDir = t.TempDir() // packs are built on the real disk, stored into crashfs
	var done []repository.ID
	for round := range 8 {
		if err := workload.Mutate(src, wl, 1); err != nil {
			t.Fatal(err)
		}
		if round%2 == 1 {
			// Power fails in the middle of a backup: after some writes.
			c := fault.NewCrasher(2 + round)
			e.be = &fault.Backend{Backend: be, Hook: c.Hook}
			_, _, _ = e.backup()
			e.be = be
		} else {
			sn, _ := e.mustBackup()
			done = append(done, sn.ID)
		}
		cfs.Crash()
		e.opt.StaleAfter = time.Nanosecond
		got := map[repository.ID]bool{}
		for _, sn := range e.snapshots() {
			got[sn.ID] = true
		}
		for _, id := range done {
			if !got[id] {
				t.Fatalf("round %d: snapshot %s was reported done and is gone after the crash", round, id.Str())
			}
		}
		rep := e.check(checker.Options{ReadData: true})
		if !rep.OK() {
			t.Fatalf("round %d: check after crash: %+v", round, rep.Problems)
		}
	}
	for _, sn := range e.snapshots() {
		e.assertRestores(sn)
	}
}

// Scenario 4: a torn pack or index write is detected at read, and only that
// data is flagged.
func TestTornWrites(t *testing.T) {
	e := newEnv(t, smallVolume())
	sn1, _ := e.mustBackup()
	_ = workload.Mutate(e.src, e.wl, 1)
	e.mustBackup()
	packs := packFiles(t, e.dir)
	torn := packs[len(packs)/2]
	fi, _ := os.Stat(torn)
	if err := os.Truncate(torn, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	rep := e.check(checker.Options{})
	if rep.OK() {
		t.Fatal("check missed a torn pack")
	}
	for _, p := range rep.Problems {
		if !strings.Contains(p.Object, filepath.Base(torn)) && !strings.Contains(p.Pack, filepath.Base(torn)) {
			t.Fatalf("problem outside the torn pack flagged: %+v", p)
		}
	}
	if len(rep.Affected) == 0 {
		t.Fatal("check named no affected file")
	}
	// Torn index file.
	idx, _ := filepath.Glob(filepath.Join(e.dir, "index", "*"))
	if err := os.Truncate(idx[0], 10); err != nil {
		t.Fatal(err)
	}
	rep = e.check(checker.Options{})
	found := false
	for _, p := range rep.Problems {
		found = found || p.Kind == "bad-index" && strings.Contains(p.Object, filepath.Base(idx[0]))
	}
	if !found {
		t.Fatalf("torn index not reported: %+v", rep.Problems)
	}
	_ = sn1
}

// Scenario 5: bit flips in packs at rest. A full read-back finds every
// flipped pack; restore refuses the bad blobs and names the files.
func TestBitFlipsAreFoundAndRefused(t *testing.T) {
	e := newEnv(t, workload.Options{Proxies: 6, ConsulServers: 1, Scale: 0.05, Seed: 11})
	sn, _ := e.mustBackup()
	packs := packFiles(t, e.dir)
	flipped := map[string]bool{}
	for i, p := range packs {
		if i%3 != 0 {
			continue
		}
		b, _ := os.ReadFile(p)
		b[len(b)/3] ^= 0x10
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		flipped[filepath.Base(p)] = true
	}
	rep := e.check(checker.Options{ReadData: true})
	found := map[string]bool{}
	for _, p := range rep.Problems {
		if p.Pack != "" {
			found[p.Pack] = true
		} else {
			found[filepath.Base(p.Object)] = true
		}
	}
	for p := range flipped {
		if !found[p] {
			t.Fatalf("flipped pack %s not found by read-back (found %v)", p[:8], found)
		}
	}
	if len(rep.Affected) == 0 {
		t.Fatal("no affected files named")
	}
	target := filepath.Join(t.TempDir(), "r")
	res, _, err := e.restore(sn, target)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed) == 0 || !res.Corrupt() {
		t.Fatalf("restore accepted corrupt data: %+v", res.Failed)
	}
	// Every file restored is exact; every failed one is absent and named.
	got := e.manifest(target)
	want := e.oracle[sn.ID]
	for _, f := range res.Failed {
		if _, ok := got[f.Path]; ok && got[f.Path].Type == "file" {
			if got[f.Path].Hash != want[f.Path].Hash {
				t.Fatalf("corrupt file %s written under its final name", f.Path)
			}
		}
	}
	for p, ent := range got {
		if ent.Type == "file" && ent.Hash != want[p].Hash {
			t.Fatalf("restored file %s differs from the source", p)
		}
	}
}

// Scenario 6: ENOSPC. The backup fails cleanly, leaves no half-committed
// index, and succeeds once space is back.
func TestNoSpace(t *testing.T) {
	e := newEnv(t, smallVolume())
	e.mustBackup()
	base := e.be
	for _, failOn := range []backend.FileType{backend.PackFile, backend.IndexFile, backend.SnapshotFile} {
		_ = workload.Mutate(e.src, e.wl, 1)
		e.be = &fault.Backend{Backend: base, Hook: func(op fault.Op, h backend.Handle) error {
			if op == fault.OpSave && h.Type == failOn {
				return fault.ErrNoSpace
			}
			return nil
		}}
		_, _, err := e.backup()
		e.be = base
		if !errors.Is(err, fault.ErrNoSpace) {
			t.Fatalf("ENOSPC on %s: want the error reported, got %v", failOn, err)
		}
		e.assertCheckOK(false)
		sn, _ := e.mustBackup()
		e.assertRestores(sn)
	}
}

// Scenario 10: a proxy crashes during the backup (log truncated, PEMs
// reissued, files vanish). Each file is stored consistently, vanished files
// do not fail the run.
func TestProxyCrashDuringBackup(t *testing.T) {
	e := newEnv(t, smallVolume())
	e.mustBackup()
	_ = workload.Mutate(e.src, e.wl, 1)
	base := e.be
	var once sync.Once
	e.be = &fault.Backend{Backend: base, Hook: func(op fault.Op, h backend.Handle) error {
		if op == fault.OpSave && h.Type == backend.LockFile {
			// The backup has started walking by the time it saves its
			// first pack; crash proxies as soon as the lock is taken.
			go once.Do(func() {
				for p := range 4 {
					_ = workload.Crash(e.src, e.wl, p)
				}
				_ = os.RemoveAll(filepath.Join(e.src, "consul"))
			})
		}
		return nil
	}}
	sn, _, err := e.backup()
	e.be = base
	if err != nil {
		t.Fatalf("backup failed because files changed under it: %v", err)
	}
	// Whatever was stored restores and every stored file is internally
	// consistent: it equals the source either before or after the crash.
	target := filepath.Join(t.TempDir(), "r")
	res, _, err := e.restore(sn, target)
	if err != nil || res.Err() != nil {
		t.Fatal(err, res.Err())
	}
	after := e.manifest(e.src)
	before := e.oracle[sn.ID]
	for p, ent := range e.manifest(target) {
		if ent.Type != "file" || strings.HasSuffix(p, ".log") {
			continue // logs may be read mid-append: any prefix is consistent
		}
		if ent.Hash != before[p].Hash && ent.Hash != after[p].Hash {
			t.Fatalf("%s restored as neither its old nor its new content", p)
		}
	}
	e.assertCheckOK(true)
}

// Scenario 11: the access log rotates while backups run. Across access.log
// and access.log.1 of every snapshot no line is missing.
func TestLogRotationRace(t *testing.T) {
	wl := smallVolume()
	wl.LogRotateBytes = 64 << 10
	e := newEnv(t, wl)
	app, err := workload.NewAppender(e.src, wl, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = app.Append(20)
			if i%10 == 9 {
				_ = app.Rotate()
			}
		}
	}()
	var snaps []*snapshot.Snapshot
	for range 8 {
		// No manifest oracle: the tree is live. The oracle is the
		// sequence numbers in the logs.
		a, err := archiver.New(e.open(), e.aopt)
		if err != nil {
			t.Fatal(err)
		}
		sn, err := a.Backup(t.Context(), e.src)
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, sn)
	}
	close(stop)
	wg.Wait()
	proxies, _ := filepath.Glob(filepath.Join(e.src, "proxies", "*"))
	slices.Sort(proxies)
	rel, _ := filepath.Rel(e.src, proxies[0])
	for i, sn := range snaps {
		target := filepath.Join(t.TempDir(), "r")
		if _, _, err := e.restore(sn, target); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(target, rel)
		_ = os.Remove(filepath.Join(dir, "access.log.2")) // only the pair is promised
		for g := 3; g <= 5; g++ {
			_ = os.Remove(filepath.Join(dir, "access.log."+itoa(g)))
		}
		seqs, err := workload.Seqs(dir)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(seqs)
		seqs = slices.Compact(seqs)
		for j := 1; j < len(seqs); j++ {
			if seqs[j] != seqs[j-1]+1 {
				t.Fatalf("snapshot %d: lines %d..%d lost between access.log.1 and access.log", i, seqs[j-1]+1, seqs[j]-1)
			}
		}
	}
}

// Scenario 13: an overlapping trigger of the same policy is skipped.
func TestOverlappingBackupSkipped(t *testing.T) {
	e := newEnv(t, smallVolume())
	r := e.open()
	abs, _ := filepath.Abs(e.src)
	l, err := r.Lock(t.Context(), repository.LockOptions{Command: "backup", Policy: "mesh", Source: abs})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = e.backup()
	if !errors.Is(err, archiver.ErrOverlap) {
		t.Fatalf("overlapping backup: want ErrOverlap, got %v", err)
	}
	// Another policy of the same repository runs concurrently.
	e.aopt.Policy = "other"
	e.mustBackup()
	_ = l.Unlock()
	e.aopt.Policy = "mesh"
	e.mustBackup()
}

// Forget and a two-phase prune: packs are marked first and deleted only
// after the grace period; a crash at any prune step loses no referenced
// data.
func TestForgetAndPrune(t *testing.T) {
	e := newEnv(t, smallVolume())
	for range 4 {
		e.mustBackup()
		_ = workload.Mutate(e.src, e.wl, 3)
	}
	snaps := e.snapshots()
	// Forget all but the newest.
	for _, d := range snapshot.ApplyPolicy(snaps, snapshot.KeepPolicy{Last: 1}) {
		if !d.Keep {
			_ = e.be.Remove(t.Context(), backend.Handle{Type: backend.SnapshotFile, Name: d.Snapshot.ID.String()})
		}
	}
	clock := repotest.NewClock(time.Now())
	runPrune := func(be backend.Backend) (*prune.Plan, error) {
		r := repotest.Reopen(t, be, repository.Options{})
		plan, err := prune.NewPlan(t.Context(), r, prune.Options{Grace: time.Hour, Now: clock.Now})
		if err != nil {
			return nil, err
		}
		return plan, plan.Execute(t.Context(), r)
	}
	before := len(packFiles(t, e.dir))
	plan, err := runPrune(e.be)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Mark) == 0 || len(plan.Delete) != 0 || len(packFiles(t, e.dir)) != before {
		t.Fatalf("phase one must only mark: %d marked, %d deleted", len(plan.Mark), len(plan.Delete))
	}
	clock.Add(30 * time.Minute)
	if plan, _ = runPrune(e.be); len(plan.Delete) != 0 {
		t.Fatal("deleted inside the grace period")
	}
	clock.Add(31 * time.Minute)
	// Crash at every write of the deleting prune in turn.
	for n := 0; ; n++ {
		c := fault.NewCrasher(n)
		_, err := runPrune(&fault.Backend{Backend: e.be, Hook: c.Hook})
		e.assertCheckOK(false)
		e.assertAllRestore()
		if err == nil {
			break
		}
	}
	if after := len(packFiles(t, e.dir)); after >= before {
		t.Fatalf("prune freed nothing: %d packs before, %d after", before, after)
	}
	e.assertCheckOK(true)
	// The next backup still works.
	_ = workload.Mutate(e.src, e.wl, 1)
	sn, _ := e.mustBackup()
	e.assertRestores(sn)
}

// Many nodes write one repository: backups of different sources run at the
// same time under shared locks and every snapshot restores.
func TestConcurrentBackups(t *testing.T) {
	e := newEnv(t, smallVolume())
	other := filepath.Join(t.TempDir(), "vol2")
	if err := workload.Generate(other, workload.Options{Proxies: 3, ConsulServers: 1, Scale: 0.03, Seed: 99}); err != nil {
		t.Fatal(err)
	}
	wantA, wantB := e.manifest(e.src), e.manifest(other)
	var wg sync.WaitGroup
	snaps := make([]*snapshot.Snapshot, 2)
	errs := make([]error, 2)
	for i, src := range []string{e.src, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opt := repotest.Options()
			opt.Hostname = "node-" + itoa(i)
			r, err := repository.Open(t.Context(), e.be, repotest.Password, opt)
			if err != nil {
				errs[i] = err
				return
			}
			a, err := archiver.New(r, archiver.Options{Policy: "p" + itoa(i), Hostname: opt.Hostname})
			if err != nil {
				errs[i] = err
				return
			}
			snaps[i], errs[i] = a.Backup(t.Context(), src)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
	}
	e.oracle[snaps[0].ID], e.oracle[snaps[1].ID] = wantA, wantB
	e.assertAllRestore()
	e.assertCheckOK(true)
}

// --read-data-subset n/t: the t parts together read every pack once.
func TestReadDataSubsetsCoverEverything(t *testing.T) {
	e := newEnv(t, workload.Options{Proxies: 6, ConsulServers: 1, Scale: 0.05, Seed: 2})
	e.mustBackup()
	total, read := 0, 0
	for n := 1; n <= 4; n++ {
		rep := e.check(checker.Options{SubsetN: n, SubsetT: 4})
		if !rep.OK() {
			t.Fatal(rep.Problems)
		}
		total, read = rep.Packs, read+rep.PacksRead
	}
	if total < 4 || read != total {
		t.Fatalf("subsets read %d packs of %d", read, total)
	}
}

// An index that disagrees with a pack's trailer is reported.
func TestIndexTrailerMismatch(t *testing.T) {
	e := newEnv(t, smallVolume())
	e.mustBackup()
	r := e.open()
	if err := r.LoadIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	for pid, blobs := range r.Index().Packs() {
		if len(blobs) == 0 {
			continue
		}
		bad := blobs[0]
		bad.Offset += 7
		if _, err := r.SaveIndexFile(t.Context(), &repository.IndexFile{Packs: []repository.IndexPack{{ID: pid, Blobs: []repository.PackBlob{bad}}}}); err != nil {
			t.Fatal(err)
		}
		break
	}
	rep := e.check(checker.Options{})
	found := false
	for _, p := range rep.Problems {
		found = found || p.Kind == "index-mismatch"
	}
	if !found {
		t.Fatalf("mismatch not reported: %+v", rep.Problems)
	}
}

// An unmounted volume (an empty mount point) is refused, so retention cannot
// push the real snapshots out; an unreadable source root fails the backup.
func TestEmptyOrUnreadableSourceRefused(t *testing.T) {
	e := newEnv(t, smallVolume())
	e.mustBackup()
	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(e.src, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.src, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.backup(); !errors.Is(err, archiver.ErrEmptySource) {
		t.Fatalf("empty source: want ErrEmptySource, got %v", err)
	}
	e.aopt.AllowEmptySource = true
	e.mustBackup()
	e.aopt.AllowEmptySource = false
	// Unreadable root (not as root: root reads everything).
	if os.Geteuid() != 0 {
		_ = os.Chmod(e.src, 0)
		defer os.Chmod(e.src, 0o755)
		a, err := archiver.New(e.open(), e.aopt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Backup(t.Context(), e.src); err == nil {
			t.Fatal("backup of an unreadable source succeeded")
		}
	}
}
