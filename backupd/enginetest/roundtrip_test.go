package enginetest

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/restorer"
	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/bench/workload"
)

// writeTree makes the shapes a mesh volume has: many small files, large
// append-only logs, symlinks, empty files, odd modes, deep directories.
func writeTree(t *testing.T, root string, shape string) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	must(t, os.MkdirAll(root, 0o755))
	switch shape {
	case "many small files":
		for i := range 2000 {
			d := filepath.Join(root, "d"+string(rune('a'+i%20)))
			must(t, os.MkdirAll(d, 0o755))
			b := make([]byte, r.IntN(3000))
			for j := range b {
				b[j] = byte('a' + r.IntN(20))
			}
			must(t, os.WriteFile(filepath.Join(d, "f"+strings.Repeat("x", i%7)+string(rune('0'+i%10))+"-"+itoa(i)), b, 0o644))
		}
	case "large append-only logs":
		var buf bytes.Buffer
		for i := range 300_000 {
			buf.WriteString("[2026-11-22T10:00:00.000Z] \"GET /api/v1/items/")
			buf.WriteString(itoa(r.IntN(100000)))
			buf.WriteString(" HTTP/1.1\" 200 - via_upstream seq=")
			buf.WriteString(itoa(i))
			buf.WriteString("\n")
		}
		must(t, os.WriteFile(filepath.Join(root, "access.log"), buf.Bytes(), 0o640))
		rnd := make([]byte, 9<<20)
		for i := range rnd {
			rnd[i] = byte(r.Uint32())
		}
		must(t, os.WriteFile(filepath.Join(root, "raft.db"), rnd, 0o600))
	case "links, empties, modes":
		must(t, os.MkdirAll(filepath.Join(root, "a/b/c/d/e"), 0o750))
		must(t, os.WriteFile(filepath.Join(root, "a/b/c/d/e/deep"), []byte("deep"), 0o400))
		must(t, os.WriteFile(filepath.Join(root, "empty"), nil, 0o644))
		must(t, os.WriteFile(filepath.Join(root, "exec.sh"), []byte("#!/bin/sh\n"), 0o755))
		must(t, os.WriteFile(filepath.Join(root, "setgid"), []byte("x"), 0o644))
		must(t, os.Chmod(filepath.Join(root, "setgid"), 0o2755))
		must(t, os.Symlink("exec.sh", filepath.Join(root, "rel-link")))
		must(t, os.Symlink("/nonexistent/abs", filepath.Join(root, "dangling-abs")))
		must(t, os.Symlink("a/b", filepath.Join(root, "dir-link")))
		must(t, os.Mkdir(filepath.Join(root, "emptydir"), 0o711))
		must(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	}
}

func itoa(i int) string { return strings.TrimLeft(string(rune(0)), "\x00") + formatInt(i) }

func formatInt(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}

func TestRoundTrip(t *testing.T) {
	for _, shape := range []string{"many small files", "large append-only logs", "links, empties, modes"} {
		t.Run(shape, func(t *testing.T) {
			t.Parallel()
			e := newTreeEnv(t, shape)
			sn, a := e.mustBackup()
			e.assertRestores(sn)
			if shape == "links, empties, modes" && a.Stats.FilesSkipped.Load() != 1 {
				t.Fatalf("fifo: %d files skipped, want 1", a.Stats.FilesSkipped.Load())
			}
			e.assertCheckOK(true)
		})
	}
}

// Incremental backups after realistic mesh activity each restore
// byte-exact, and unchanged data is neither read nor stored again.
func TestIncrementalAfterMutations(t *testing.T) {
	e := newEnv(t, smallVolume())
	first, a := e.mustBackup()
	if a.Stats.FilesNew.Load() == 0 || a.Stats.FilesSkipped.Load() == 0 {
		t.Fatalf("first backup: %d new, %d skipped (sockets)", a.Stats.FilesNew.Load(), a.Stats.FilesSkipped.Load())
	}
	// No change: nothing read, nothing stored but the snapshot.
	_, a = e.mustBackup()
	if a.Stats.BytesRead.Load() != 0 || a.Stats.FilesNew.Load()+a.Stats.FilesChanged.Load() != 0 || a.Stats.BlobsWritten.Load() != 0 {
		t.Fatalf("no-change backup read %d bytes, %d new+changed files, wrote %d blobs", a.Stats.BytesRead.Load(),
			a.Stats.FilesNew.Load()+a.Stats.FilesChanged.Load(), a.Stats.BlobsWritten.Load())
	}
	prev := e.manifest(e.src)
	for step := range 6 {
		if err := workload.Mutate(e.src, e.wl, 1); err != nil {
			t.Fatal(err)
		}
		if step == 3 {
			if err := workload.Crash(e.src, e.wl, 1); err != nil {
				t.Fatal(err)
			}
		}
		cur := e.manifest(e.src)
		// What an incremental backup may read: the files whose content
		// changed, plus one re-read last chunk per changed log.
		var allowed uint64
		for p, ent := range cur {
			if old, ok := prev[p]; ent.Type == "file" && (!ok || old.Hash != ent.Hash) {
				allowed += uint64(ent.Size)
				if strings.HasSuffix(p, ".log") {
					allowed += 4 << 20
				}
			}
		}
		prev = cur
		_, a = e.mustBackup()
		if a.Stats.FilesChanged.Load()+a.Stats.FilesNew.Load() == 0 || a.Stats.BytesRead.Load() == 0 {
			t.Fatalf("step %d: mutation not noticed", step)
		}
		if a.Stats.BytesRead.Load() > allowed {
			t.Fatalf("step %d: read %d bytes, but only %d bytes of files changed: unchanged files were read", step, a.Stats.BytesRead.Load(), allowed)
		}
	}
	e.assertAllRestore()
	e.assertRestores(first)
	e.assertCheckOK(true)
}

// Append-only logs: only the tail is read and stored, every chunk of the
// older part is kept (also by the periodic full read, which re-hashes them
// where they lie), an edit in place in the older part is caught by that
// full read, and every restore is byte-exact.
func TestAppendOnlyTailReads(t *testing.T) {
	e := newTreeEnv(t, "large append-only logs")
	e.aopt = archiver.Options{Policy: "mesh", FullReadEvery: 3}
	prev, _ := e.mustBackup()
	logPath := filepath.Join(e.src, "access.log")
	edited := -1 // the chunk edited in place before backup 3
	for i := range 4 {
		oldNode, ends := e.node(prev, "access.log")
		if i == 1 {
			// An edit in the middle of the older part (the file keeps its
			// inode and still grows): a tail-only backup cannot see it.
			f, err := os.OpenFile(logPath, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			off := oldNode.Size / 2
			if _, err := f.WriteAt([]byte("EDITED"), int64(off)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			for edited = 0; off >= ends[edited]; edited++ {
			}
		}
		appendTo(t, logPath, strings.Repeat("appended line "+itoa(i)+"\n", 2000))
		sn, a := e.mustBackup()
		n, _ := e.node(sn, "access.log")
		last := lastChunk(ends)
		grown := n.Size - oldNode.Size
		switch i {
		case 0, 1, 3: // tail-only: the old last chunk is re-hashed, then the tail read
			wantKept := keptOnGrowth(ends)
			if got := a.Stats.BytesRead.Load(); got > 2*last+grown+100_000 {
				t.Fatalf("backup %d read %d bytes: not tail-only (log %d bytes, %d appended, old last chunk %d)", i+2, got, n.Size, grown, last)
			}
			if k := keptChunks(oldNode, n); k != wantKept {
				t.Fatalf("backup %d kept %d of the %d old chunks, want %d", i+2, k, len(oldNode.Content), wantKept)
			}
		case 2: // the periodic full read re-hashes every chunk where it lies
			if got := a.Stats.BytesRead.Load(); got < n.Size {
				t.Fatalf("periodic full read did not happen: read %d of %d bytes", got, n.Size)
			}
			if k := keptChunks(oldNode, n); k != edited {
				t.Fatalf("full read kept %d of the %d old chunks, want the %d before the edited one", k, len(oldNode.Content), edited)
			}
		}
		// The tail-only backup after the edit holds the old bytes there;
		// every other snapshot is exact, the full read's included.
		if i != 1 {
			e.assertRestores(sn)
		}
		prev = sn
	}
}

// An edit in place in the older part of a log that then stops growing is
// still caught: backups count towards the periodic full read whether or
// not the file changes again (and its directory is walked, not taken
// whole by its digest, until then).
func TestAppendOnlyEditCaughtWhenQuiet(t *testing.T) {
	e := newTreeEnv(t, "large append-only logs")
	e.aopt = archiver.Options{Policy: "mesh", FullReadEvery: 3}
	logPath := moveUnder(t, e.src, "proxy", "access.log")
	e.mustBackup()
	f, err := os.OpenFile(logPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	if _, err := f.WriteAt([]byte("EDITED"), fi.Size()/3); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("one more line\n"), fi.Size()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e.mustBackup() // tail-only: holds the old bytes where the edit is
	var reads []uint64
	for range 2 { // nothing changes any more
		sn, a := e.mustBackup()
		reads = append(reads, a.Stats.BytesRead.Load())
		if a.Stats.FilesUnchanged.Load() == 0 {
			t.Fatalf("no unchanged files in a backup of an unchanged tree")
		}
		if len(reads) == 2 {
			if reads[0] != 0 || reads[1] < uint64(fi.Size()) {
				t.Fatalf("bytes read by the two quiet backups: %v; want 0, then the whole log (%d bytes)", reads, fi.Size())
			}
			// The edit is reported: metadata unchanged, content not.
			if a.Stats.SilentChanges.Load() != 1 || a.Stats.FilesChanged.Load() != 1 {
				t.Fatalf("full read found the edit: %d silent changes, %d files changed; want 1 and 1",
					a.Stats.SilentChanges.Load(), a.Stats.FilesChanged.Load())
			}
			e.assertRestores(sn)
		}
	}
}

// A file taken partly unread still gets its full read after the append-only
// patterns change (it would otherwise keep its directories from ever having
// a digest).
func TestPartlyReadFileAfterPatternChange(t *testing.T) {
	e := newTreeEnv(t, "large append-only logs")
	logPath := moveUnder(t, e.src, "proxy", "access.log")
	e.aopt = archiver.Options{Policy: "mesh", FullReadEvery: 2}
	e.mustBackup()
	appendTo(t, logPath, "one more line\n")
	e.mustBackup() // tail-only: TailRuns 1
	if n, _ := e.node(e.snapshots()[1], filepath.Join("proxy", "access.log")); n.TailRuns != 1 {
		t.Fatalf("TailRuns %d after a tail read, want 1", n.TailRuns)
	}
	// *.log is no longer append-only: the full read still happens.
	e.aopt.AppendOnly = []string{"*.jsonl"}
	sn, a := e.mustBackup()
	n, _ := e.node(sn, filepath.Join("proxy", "access.log"))
	if n.TailRuns != 0 || a.Stats.BytesRead.Load() < n.Size {
		t.Fatalf("after the pattern change: TailRuns %d, read %d of %d bytes; want the full read", n.TailRuns, a.Stats.BytesRead.Load(), n.Size)
	}
	e.assertRestores(sn)
	// With the full read done, the directory has its digest again.
	_, a = e.mustBackup()
	if a.Stats.DirsReused.Load() == 0 {
		t.Fatal("no directory taken whole by its digest after the full read")
	}
}

// A log rotated to a new name (same inode, maybe grown since the last
// backup) keeps every chunk of its old node, boundaries where earlier
// backups found its end included: it is re-hashed where they lie, not
// chunked anew. A renamed file edited in place is caught all the same.
func TestRotatedLogKeepsItsChunks(t *testing.T) {
	e := newTreeEnv(t, "large append-only logs")
	logPath := filepath.Join(e.src, "access.log")
	const line = "[2026-12-01T10:00:00.000Z] \"GET /healthz HTTP/1.1\" 200 appended\n"
	appendBytes := func(n int) { appendTo(t, logPath, strings.Repeat(line, n/len(line)+1)) }
	e.mustBackup()
	// Three tail-only backups, each appending more than the minimum chunk
	// size: chunks end where each backup found the end of the file.
	for range 3 {
		appendBytes(300 << 10)
		e.mustBackup()
	}
	before := e.snapshots()[len(e.snapshots())-1]
	oldLog, ends := e.node(before, "access.log")
	oldDB, _ := e.node(before, "raft.db")
	appendBytes(10 << 10) // written after the last backup, before the rotation
	must(t, os.Rename(logPath, logPath+".1"))
	must(t, os.WriteFile(logPath, []byte("first line after rotation\n"), 0o640))
	must(t, os.Rename(filepath.Join(e.src, "raft.db"), filepath.Join(e.src, "raft.db.old")))
	sn, a := e.mustBackup()
	rotated, _ := e.node(sn, "access.log.1")
	db, _ := e.node(sn, "raft.db.old")
	wantKept := keptOnGrowth(ends)
	if k := keptChunks(oldLog, rotated); k != wantKept {
		t.Fatalf("rotated log kept %d of the old log's %d chunks, want %d", k, len(oldLog.Content), wantKept)
	}
	if !slices.Equal(db.Content, oldDB.Content) {
		t.Fatal("renamed raft.db did not keep its chunks")
	}
	if got := a.Stats.FilesNew.Load(); got != 2 {
		t.Fatalf("%d files new, want 2 (the renamed ones)", got)
	}
	if w := a.Stats.BytesWritten.Load(); w > 2<<20 {
		t.Fatalf("stored %d bytes for a rotation that added 10 KiB", w)
	}
	e.assertRestores(sn)

	// Renamed and edited in place at the start: the old node is compared
	// chunk by chunk, so the edit is stored.
	f, err := os.OpenFile(logPath+".1", os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("EDITED"), 10)
	must(t, err)
	f.Close()
	must(t, os.Rename(logPath+".1", logPath+".2"))
	sn, _ = e.mustBackup()
	e.assertRestores(sn)
}

// Scenario 9: content changed and mtime put back: ctime gives it away.
func TestChangeWithMtimeRestored(t *testing.T) {
	e := newEnv(t, smallVolume())
	e.mustBackup()
	var victim string
	_ = filepath.Walk(e.src, func(p string, fi os.FileInfo, err error) error {
		if err == nil && victim == "" && strings.HasSuffix(p, "bootstrap.json") {
			victim = p
		}
		return nil
	})
	fi, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(victim)
	b[len(b)/2] ^= 0x20
	time.Sleep(10 * time.Millisecond) // let ctime move on coarse clocks
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(victim, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	sn, a := e.mustBackup()
	if a.Stats.FilesChanged.Load() != 1 {
		t.Fatalf("%d files changed, want the one with its mtime put back", a.Stats.FilesChanged.Load())
	}
	e.assertRestores(sn)
}

// Restore never writes outside its target, even through a symlink that
// already sits in the target where the snapshot has a directory.
func TestRestoreStaysInsideTarget(t *testing.T) {
	e := newTreeEnv(t, "links, empties, modes")
	sn, _ := e.mustBackup()
	target := filepath.Join(t.TempDir(), "target")
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.MkdirAll(outside, 0o755)
	// target/a -> outside: a naive restore of a/b/c/d/e/deep would land
	// in outside/b/c/d/e/deep.
	if err := os.Symlink(outside, filepath.Join(target, "a")); err != nil {
		t.Fatal(err)
	}
	res, _, err := e.restore(sn, target)
	if err != nil || res.Err() != nil {
		t.Fatalf("restore: %v %v", err, res.Err())
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 0 {
		t.Fatalf("restore wrote outside its target: %v", ents)
	}
	if d := workload.Diff(e.oracle[sn.ID], e.manifest(target), true); len(d) > 0 {
		t.Fatalf("restore differs: %v", d)
	}
}

// A rerun still writes into directories an earlier run left read-only
// (their snapshot mode), also without root's powers; the modes end up as
// in the snapshot again.
func TestRestoreRerunIntoReadOnlyDirs(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("permissions do not stop root; run as another user to test this")
	}
	e := newEnv(t, smallVolume())
	e.src = filepath.Join(t.TempDir(), "src")
	ro := filepath.Join(e.src, "ro", "inner")
	must(t, os.MkdirAll(ro, 0o755))
	must(t, os.WriteFile(filepath.Join(ro, "f"), []byte("data"), 0o644))
	must(t, os.Chmod(ro, 0o555))
	must(t, os.Chmod(filepath.Dir(ro), 0o555))
	t.Cleanup(func() { _ = os.Chmod(filepath.Dir(ro), 0o755); _ = os.Chmod(ro, 0o755) })
	sn, _ := e.mustBackup()
	target := filepath.Join(t.TempDir(), "target")
	if res, _, err := e.restore(sn, target); err != nil || res.Err() != nil {
		t.Fatal(err, res.Err())
	}
	inner := filepath.Join(target, "ro", "inner")
	t.Cleanup(func() { _ = os.Chmod(filepath.Dir(inner), 0o755); _ = os.Chmod(inner, 0o755) })
	must(t, os.Chmod(inner, 0o755))
	must(t, os.Remove(filepath.Join(inner, "f")))
	must(t, os.Chmod(inner, 0o555))
	res, _, err := e.restore(sn, target)
	if err != nil || res.Err() != nil {
		t.Fatalf("rerun into read-only directories: %v %v", err, res.Err())
	}
	if d := workload.Diff(e.oracle[sn.ID], e.manifest(target), true); len(d) > 0 {
		t.Fatalf("rerun did not converge: %v", d)
	}
}

// Rerunning a restore is idempotent and only rewrites what differs.
func TestRestoreRerunIsIdempotent(t *testing.T) {
	e := newEnv(t, smallVolume())
	sn, _ := e.mustBackup()
	target := filepath.Join(t.TempDir(), "target")
	if _, _, err := e.restore(sn, target); err != nil {
		t.Fatal(err)
	}
	// Damage one restored file behind the restorer's back, keeping size
	// and mtime, and leave a temp file of an "interrupted" run.
	var victim string
	_ = filepath.Walk(target, func(p string, fi os.FileInfo, err error) error {
		if err == nil && victim == "" && fi.Mode().IsRegular() && fi.Size() > 100 {
			victim = p
		}
		return nil
	})
	fi, _ := os.Stat(victim)
	b, _ := os.ReadFile(victim)
	b[0] ^= 1
	_ = os.WriteFile(victim, b, fi.Mode())
	_ = os.Chtimes(victim, fi.ModTime(), fi.ModTime())
	_ = os.WriteFile(filepath.Join(filepath.Dir(victim), ".backupd-restore-0000-x"), []byte("partial"), 0o600)
	res, rs, err := e.restore(sn, target)
	if err != nil || res.Err() != nil {
		t.Fatal(err, res.Err())
	}
	if rs.Stats.Files.Load() != 1 {
		t.Fatalf("rerun rewrote %d files, want only the damaged one", rs.Stats.Files.Load())
	}
	if d := workload.Diff(e.oracle[sn.ID], e.manifest(target), true); len(d) > 0 {
		t.Fatalf("rerun did not converge: %v", d)
	}
}

func TestWrongPasswordAndLocalReopen(t *testing.T) {
	_, dir := repotest.NewLocal(t)
	be, err := local.Open(dir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := repotest.Reopen(t, be, e0())
	if v := r.Config().Version; v != repository.FormatVersion {
		t.Fatalf("reopened repository has format version %d, want %d", v, repository.FormatVersion)
	}
}

// A file whose bytes equal an encoded tree (an empty directory's is two
// bytes, 0x01 0x00) is still its own blob: in one backup, and when the file came
// first and the empty directory later.
func TestFileEqualToATree(t *testing.T) {
	for _, order := range []string{"same backup", "file first"} {
		t.Run(order, func(t *testing.T) {
			e := newEnv(t, smallVolume())
			e.src = filepath.Join(t.TempDir(), "src")
			if err := os.MkdirAll(e.src, 0o755); err != nil {
				t.Fatal(err)
			}
			emptyTree, err := (&snapshot.Tree{}).Encode()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(e.src, "looks-like-a-tree"), emptyTree, 0o644); err != nil {
				t.Fatal(err)
			}
			if order == "file first" {
				sn, _ := e.mustBackup()
				e.assertRestores(sn)
			}
			if err := os.Mkdir(filepath.Join(e.src, "empty"), 0o755); err != nil {
				t.Fatal(err)
			}
			sn, _ := e.mustBackup()
			e.assertRestores(sn)
			e.assertCheckOK(true)
		})
	}
}

// A no-change backup reuses the parent's trees, so its root tree is the
// parent's; a change of metadata alone, deep in the tree, still makes a new
// root tree, and the snapshot restores with the new metadata.
func TestUnchangedTreesReused(t *testing.T) {
	e := newEnv(t, smallVolume())
	first, _ := e.mustBackup()
	second, a := e.mustBackup()
	if second.Tree != first.Tree || a.Stats.BlobsWritten.Load() != 0 {
		t.Fatalf("no-change backup: root tree %s, parent's %s; %d blobs written", second.Tree.Str(), first.Tree.Str(), a.Stats.BlobsWritten.Load())
	}
	var deep string
	err := filepath.WalkDir(e.src, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.Count(strings.TrimPrefix(p, e.src), "/") >= 3 {
			deep = p
			return filepath.SkipAll
		}
		return err
	})
	if err != nil || deep == "" {
		t.Fatalf("no file three levels deep: %v", err)
	}
	if err := os.Chmod(deep, 0o604); err != nil {
		t.Fatal(err)
	}
	third, _ := e.mustBackup()
	if third.Tree == second.Tree {
		t.Fatalf("mode change of %s did not change the root tree", deep)
	}
	e.assertRestores(third)
	e.assertRestores(first)
}

// Unchanged subtrees are reused by their scan digest, with the counts of a
// full walk; a change of a directory's own mode or of a file deep below is
// still found; every FullWalkEvery'th backup walks everything again.
func TestSubtreesReusedByDigest(t *testing.T) {
	e := newEnv(t, smallVolume())
	e.aopt.FullWalkEvery = 3
	first, a1 := e.mustBackup()
	if first.DigestRuns != 0 {
		t.Fatalf("first backup: digest runs %d", first.DigestRuns)
	}
	second, a2 := e.mustBackup()
	// Every directory but the root, which is always walked.
	if second.DigestRuns != 1 || second.Tree != first.Tree || a2.Stats.DirsReused.Load() != first.Totals.Dirs-1 {
		t.Fatalf("no-change backup: digest runs %d, tree %s (parent's %s), %d of %d directories reused", second.DigestRuns,
			second.Tree.Str(), first.Tree.Str(), a2.Stats.DirsReused.Load(), first.Totals.Dirs)
	}
	if second.Totals.Files != first.Totals.Files || second.Totals.Dirs != first.Totals.Dirs ||
		second.Totals.FilesSkipped != first.Totals.FilesSkipped || second.Totals.BytesTotal != first.Totals.BytesTotal ||
		a2.Stats.FilesUnchanged.Load() != a1.Stats.FilesNew.Load() {
		t.Fatalf("counts differ from the full walk: %+v, then %+v", first.Totals, second.Totals)
	}
	// A directory's own mode, and a file's content with its mtime put back.
	var dir, file string
	_ = filepath.WalkDir(e.src, func(p string, d os.DirEntry, err error) error {
		switch {
		case err != nil:
		case d.IsDir() && dir == "" && strings.Count(strings.TrimPrefix(p, e.src), "/") == 2:
			dir = p
		case d.Type().IsRegular() && file == "" && strings.HasSuffix(p, "bootstrap.json"):
			file = p
		}
		return nil
	})
	if dir == "" || file == "" {
		t.Fatal("no directory two levels deep or no bootstrap.json")
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(file)
	b, _ := os.ReadFile(file)
	b[len(b)/3] ^= 0x01
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(file, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	third, a3 := e.mustBackup()
	if third.DigestRuns != 2 || a3.Stats.FilesChanged.Load() != 1 || a3.Stats.DirsReused.Load() == 0 {
		t.Fatalf("digest runs %d, %d files changed, %d directories reused; want 2, 1 and some", third.DigestRuns,
			a3.Stats.FilesChanged.Load(), a3.Stats.DirsReused.Load())
	}
	e.assertRestores(third)
	// The third digest run would reach FullWalkEvery: a full walk.
	fourth, a4 := e.mustBackup()
	if fourth.DigestRuns != 0 || fourth.Tree != third.Tree || a4.Stats.DirsReused.Load() != 0 {
		t.Fatalf("full walk: digest runs %d, tree %s (parent's %s)", fourth.DigestRuns, fourth.Tree.Str(), third.Tree.Str())
	}
	fifth, _ := e.mustBackup()
	if fifth.DigestRuns != 1 || fifth.Tree != third.Tree {
		t.Fatalf("after the full walk: digest runs %d", fifth.DigestRuns)
	}
	e.assertRestores(first)
	e.assertCheckOK(false)
}

// The target takes the source directory's own mode and mtime when the
// restore made it (or an interrupted run of it did) or it was empty; a
// directory with other things in it keeps its own, as do an empty shared
// directory (sticky, writable by all) and a drill's scratch space.
func TestRestoreTargetMetadata(t *testing.T) {
	e := newTreeEnv(t, "links, empties, modes")
	srcMode := fs.ModeDir | fs.ModeSetgid | 0o750
	must(t, os.Chmod(e.src, srcMode))
	mt := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	must(t, os.Chtimes(e.src, mt, mt))
	sn, _ := e.mustBackup()
	restore := func(target string, opt restorer.Options) fs.FileInfo {
		t.Helper()
		r := e.open()
		must(t, r.LoadIndex(t.Context()))
		res, err := restorer.New(r, opt).Restore(t.Context(), sn, target)
		must(t, err)
		must(t, res.Err())
		fi, err := os.Stat(target)
		must(t, err)
		return fi
	}
	took := func(fi fs.FileInfo) bool { return fi.Mode() == srcMode && fi.ModTime().Equal(mt) }

	fresh := filepath.Join(t.TempDir(), "fresh")
	if fi := restore(fresh, restorer.Options{}); !took(fi) {
		t.Errorf("new target: %v %v, want the source's %v %v", fi.Mode(), fi.ModTime(), srcMode, mt)
	}
	if d := workload.Diff(e.oracle[sn.ID], e.manifest(fresh), true); len(d) > 0 {
		t.Errorf("new target differs (marker left behind?): %v", d)
	}
	// A rerun into the finished target (its mode changed meanwhile) leaves
	// the mode alone; a rerun after an interruption (the marker is still
	// there) sets it.
	must(t, os.Chmod(fresh, 0o700))
	if fi := restore(fresh, restorer.Options{}); fi.Mode() != fs.ModeDir|0o700 {
		t.Errorf("rerun into a finished target: mode %v, want its own 0700", fi.Mode())
	}
	must(t, os.WriteFile(restorer.MarkerPath(fresh), nil, 0o600))
	if fi := restore(fresh, restorer.Options{}); !took(fi) {
		t.Errorf("rerun after an interruption: %v, want %v", fi.Mode(), srcMode)
	}
	if _, err := os.Lstat(restorer.MarkerPath(fresh)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("marker left after the rerun: %v", err)
	}
	empty := t.TempDir()
	must(t, os.Mkdir(filepath.Join(empty, "lost+found"), 0o700)) // a new file system
	if fi := restore(empty, restorer.Options{}); !took(fi) {
		t.Errorf("empty target: %v, want %v", fi.Mode(), srcMode)
	}
	for name, mode := range map[string]fs.FileMode{"sticky": fs.ModeSticky | 0o777, "world-writable": 0o777} {
		d := filepath.Join(t.TempDir(), name)
		must(t, os.Mkdir(d, 0o700))
		must(t, os.Chmod(d, mode))
		if fi := restore(d, restorer.Options{}); fi.Mode() != fs.ModeDir|mode {
			t.Errorf("empty %s target: mode changed to %v", name, fi.Mode())
		}
	}
	home := t.TempDir()
	must(t, os.Chmod(home, 0o711))
	must(t, os.WriteFile(filepath.Join(home, "empty"), nil, 0o644)) // a name the snapshot has too
	if fi := restore(home, restorer.Options{}); fi.Mode() != fs.ModeDir|0o711 {
		t.Errorf("target with files in it: mode changed to %v", fi.Mode())
	}
	scratch := filepath.Join(t.TempDir(), "drill")
	if fi := restore(scratch, restorer.Options{KeepTargetMeta: true}); fi.Mode() != fs.ModeDir|0o700 {
		t.Errorf("KeepTargetMeta: target mode %v, want the 0700 it was made with", fi.Mode())
	}
}
