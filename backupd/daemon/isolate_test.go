package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/results"
)

// childEnv makes the test binary a backup child (ServeChild) instead of
// running tests: the daemon's children inherit it from the test.
const childEnv = "BACKUPD_DAEMON_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		err := ServeChild(ctx, os.Stdin, os.Stdout, ChildOptions{
			Logger: func(l slog.Level) *slog.Logger {
				return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
			},
			RepoOptions: repotest.Options(),
		})
		stop()
		if err != nil {
			os.Stderr.WriteString("backup child: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testChild is an Isolation running this test binary as the child.
func testChild(t *testing.T, storage StorageObserver) *Isolation {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, "1")
	return &Isolation{Path: exe, Args: []string{exe}, Storage: storage}
}

// shellChild is an Isolation whose child is a shell script.
func shellChild(script string) *Isolation {
	return &Isolation{Path: "/bin/sh", Args: []string{"sh", "-c", script}, Grace: 5 * time.Second}
}

// storageRecorder counts the storage operations relayed from children.
type storageRecorder struct {
	mu      sync.Mutex
	ops     map[string]int // repository/op/result
	retries int
}

func (s *storageRecorder) Observe(repo, op, result string, _ time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ops == nil {
		s.ops = map[string]int{}
	}
	s.ops[repo+"/"+op+"/"+result]++
}

func (s *storageRecorder) Retried(string, string) {
	s.mu.Lock()
	s.retries++
	s.mu.Unlock()
}

func (s *storageRecorder) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ops[key]
}

// countingObserver counts progress reports and can act on the first one.
type countingObserver struct {
	nopObserver
	mu         sync.Mutex
	progress   []results.Record
	onProgress func()
}

func (o *countingObserver) RunProgress(r results.Record) {
	o.mu.Lock()
	o.progress = append(o.progress, r)
	fn := o.onProgress
	o.onProgress = nil
	o.mu.Unlock()
	if fn != nil {
		fn()
	}
}

func writeSource(t *testing.T, files int, size int) string {
	t.Helper()
	src := t.TempDir()
	for i := range files {
		b := bytes.Repeat([]byte{byte(i), byte(i >> 8), 'x', 'y', 'z', byte(i * 7)}, size/6)
		if err := os.WriteFile(filepath.Join(src, "f"+string(rune('a'+i%26))+string(rune('a'+i/26))), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// A backup in a child process (this test binary re-executed): its snapshot
// is in the repository, its record carries its counts and the child's own
// CPU time, peak RSS and I/O, its progress reached the observer while it
// ran, the child's storage operations reached the storage observer, and
// its lock is gone.
func TestIsolatedBackupInAChild(t *testing.T) {
	src := writeSource(t, 40, 256<<10)
	storage := &storageRecorder{}
	obs := &countingObserver{}
	d, cfg := testDaemon{source: src, observer: obs, isolate: testChild(t, storage), progress: 5 * time.Millisecond}.open(t)
	h := d.handle("local")
	rec := d.runBackup(t.Context(), cfg, h, cfg.Policies[0], "scheduled")
	if rec.Outcome != results.Success || rec.Snapshot == "" {
		t.Fatalf("isolated backup: %+v", rec)
	}
	if rec.FilesNew != 40 || rec.BytesRead != 40*((256<<10)/6*6) || rec.BytesWritten == 0 {
		t.Fatalf("counts of the child's backup: %+v", rec)
	}
	if rec.CPUSeconds <= 0 || rec.MaxRSS < 1<<20 || rec.ReadIOBytes == 0 {
		t.Fatalf("the child's usage is missing: cpu %v s, peak rss %d, read %d", rec.CPUSeconds, rec.MaxRSS, rec.ReadIOBytes)
	}
	_, sn, err := latest(t.Context(), h, cfg.Policies[0], "testhost", false)
	if err != nil || sn == nil || sn.ID.String() != rec.Snapshot || sn.Totals.FilesNew != 40 {
		t.Fatalf("the child's snapshot in the repository: %+v, %v", sn, err)
	}
	obs.mu.Lock()
	progress := obs.progress
	obs.mu.Unlock()
	if len(progress) == 0 {
		t.Fatal("no progress reported while the child ran")
	}
	for _, p := range progress {
		if p.RunID != rec.RunID || p.FilesNew > rec.FilesNew || p.BytesRead > rec.BytesRead || p.BytesWritten > rec.BytesWritten {
			t.Fatalf("progress %+v above the final record %+v", p, rec)
		}
	}
	if storage.count("local/save/ok") == 0 || storage.count("local/list/ok") == 0 {
		t.Fatalf("the child's storage operations were not relayed: %v", storage.ops)
	}
	if locks, err := h.repo.ListLocks(t.Context()); err != nil || len(locks) != 0 {
		t.Fatalf("locks left after the child's backup: %+v, %v", locks, err)
	}
	// The next one finds its parent: nothing is read again.
	rec = d.runBackup(t.Context(), cfg, h, cfg.Policies[0], "scheduled")
	if rec.Outcome != results.Success || rec.FilesUnchanged != 40 || rec.BytesRead != 0 {
		t.Fatalf("second isolated backup: %+v", rec)
	}
}

// A child that dies without a result is a failed run with reason crashed,
// its exit named in the error; one that reports its error gets the reason
// the error would have had in process.
func TestIsolatedChildEndings(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		outcome      results.Outcome
		reason       string
		errHas       []string
	}{
		{"killed", `kill -9 $$`, results.Failure, results.ReasonCrashed,
			[]string{"was killed by signal SIGKILL", "before it reported a result"}},
		{"segfault", `kill -SEGV $$`, results.Failure, results.ReasonCrashed, []string{"signal SIGSEGV"}},
		{"panic", `echo 'panic: runtime error: index out of range [3] with length 3' >&2; echo 'goroutine 1 [running]:' >&2; exit 2`,
			results.Failure, results.ReasonCrashed, []string{"exited with status 2", "panic: runtime error: index out of range"}},
		{"exit 0 without a result", `exit 0`, results.Failure, results.ReasonCrashed, []string{"exited with status 0"}},
		{"locked", `echo '{"type":"result","error":"backup /src: repository is locked: exclusive lock","matches":["locked"]}'`,
			results.Failure, results.ReasonLocked, []string{"repository is locked"}},
		{"overlap", `echo '{"type":"result","error":"a backup of this policy and source is already running","matches":["overlap"]}'`,
			results.Failure, results.ReasonLocked, nil},
		{"corrupt", `echo '{"type":"result","error":"load index: corrupt","matches":["corrupt"]}'`,
			results.Failure, results.ReasonCorruption, nil},
		{"source shrank", `echo '{"type":"result","error":"the source shrank","matches":["source_shrank"]}'`,
			results.Failure, results.ReasonSource, nil},
		{"source gone", `echo '{"type":"result","error":"read source: no such file","matches":["not_exist"]}'`,
			results.Failure, results.ReasonSource, nil},
		{"store down", `echo '{"type":"result","error":"save pack: connection refused"}'`,
			results.Failure, results.ReasonRepository, nil},
		{"partial", `echo '{"type":"result","snapshot":"ab12","files_new":3,"files_unreadable":1}'`,
			results.Partial, "", nil},
		{"killed after its result", `echo '{"type":"result","snapshot":"ab12","files_new":3}'; kill -9 $$`,
			results.Success, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, cfg := testDaemon{source: t.TempDir(), isolate: shellChild(tc.script)}.open(t)
			rec := d.runBackup(t.Context(), cfg, d.handle("local"), cfg.Policies[0], "scheduled")
			if rec.Outcome != tc.outcome || rec.Reason != tc.reason {
				t.Fatalf("outcome %s, reason %q (err %q); want %s, %q", rec.Outcome, rec.Reason, rec.Error, tc.outcome, tc.reason)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(rec.Error, s) {
					t.Fatalf("error %q does not say %q", rec.Error, s)
				}
			}
			if tc.outcome != results.Failure && (rec.Snapshot != "ab12" || rec.FilesNew != 3) {
				t.Fatalf("result not taken: %+v", rec)
			}
		})
	}
}

// A child killed while it holds its lock: the daemon, knowing it dead,
// removes the lock (a live-looking one: another host's, not judged by its
// PID) and leaves the hint that makes the next backup adopt its packs.
func TestDeadChildsLockIsRemoved(t *testing.T) {
	_, repoDir := repotest.NewLocal(t)
	be, err := local.Open(repoDir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	put := func(name, owner string) {
		b, _ := json.Marshal(repository.LockInfo{Hostname: "elsewhere", PID: 1, Command: "backup", Time: now, Acquired: now, Owner: owner})
		if err := be.Save(t.Context(), backend.Handle{Type: backend.LockFile, Name: name}, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	put("child-lock", "dead-child")
	put("other-lock", "someone-else")
	iso := shellChild(`echo '{"type":"lock","lock_owner":"dead-child"}'; kill -9 $$`)
	d, cfg := testDaemon{source: t.TempDir(), repoDir: repoDir, isolate: iso}.open(t)
	h := d.handle("local")
	rec := d.runBackup(t.Context(), cfg, h, cfg.Policies[0], "scheduled")
	if rec.Reason != results.ReasonCrashed {
		t.Fatalf("reason %q (%s), want crashed", rec.Reason, rec.Error)
	}
	locks, err := h.repo.ListLocks(t.Context())
	if err != nil || len(locks) != 1 || locks[0].Name != "other-lock" {
		t.Fatalf("locks after the child died: %+v, %v; want only the other holder's", locks, err)
	}
	if hints, err := h.repo.OrphanHints(t.Context()); err != nil || len(hints) != 1 {
		t.Fatalf("orphan hints %v, %v: want one", hints, err)
	}
}

// The daemon stopping (its context cancelled) sends the child SIGTERM: a
// child that stops reports and the run is interrupted; one that ignores
// SIGTERM is killed after the grace, and the run is interrupted too.
func TestIsolatedChildStopsOnCancel(t *testing.T) {
	progress := `echo '{"type":"progress","files_new":1}'; `
	for _, tc := range []struct {
		name, script string
		errHas       string
	}{
		{"stops", `trap 'echo "{\"type\":\"result\",\"error\":\"backup /src: context canceled\",\"matches\":[\"canceled\"]}"; exit 0' TERM; ` + progress + `while :; do sleep 0.05; done`, "context canceled"},
		{"ignores SIGTERM", `trap '' TERM; ` + progress + `exec sleep 30`, "signal SIGKILL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iso := shellChild(tc.script)
			iso.Grace = 300 * time.Millisecond
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			obs := &countingObserver{onProgress: cancel}
			d, cfg := testDaemon{source: t.TempDir(), isolate: iso, observer: obs}.open(t)
			start := time.Now()
			rec := d.runBackup(ctx, cfg, d.handle("local"), cfg.Policies[0], "scheduled")
			if rec.Outcome != results.Failure || rec.Reason != results.ReasonInterrupted || !strings.Contains(rec.Error, tc.errHas) {
				t.Fatalf("%s %q: %s; want interrupted, saying %q", rec.Outcome, rec.Reason, rec.Error, tc.errHas)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("the stop took %s", took)
			}
		})
	}
}

func TestChildErrorMatchesItsSentinels(t *testing.T) {
	for _, s := range childSentinels {
		t.Run(s.name, func(t *testing.T) {
			in := errors.Join(errors.New("backup /src"), s.err)
			matches := sentinelsOf(in)
			e := &childError{msg: in.Error(), matches: matches}
			for _, o := range childSentinels {
				if got, want := errors.Is(e, o.err), errors.Is(in, o.err); got != want {
					t.Errorf("errors.Is(%s) = %v in the daemon, %v in the child", o.name, got, want)
				}
			}
			if classify(t.Context(), e) != classify(t.Context(), in) {
				t.Errorf("classify %q in the daemon, %q in the child", classify(t.Context(), e), classify(t.Context(), in))
			}
		})
	}
}

func TestParseChildLog(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		ok         bool
		lvl        slog.Level
		msg        string
		attrs      string
	}{
		{"record", `{"time":"2026-12-01T10:00:00Z","level":"WARN","msg":"file vanished","component":"archiver","policy":"mesh","path":"/src/a","n":3}`,
			true, slog.LevelWarn, "file vanished", "component=archiver path=/src/a n=3"},
		{"group", `{"level":"DEBUG","msg":"m","g":{"a":1}}`, true, slog.LevelDebug, "m", "g=map[a:1]"},
		{"odd level", `{"level":"LOUD","msg":"m"}`, true, slog.LevelInfo, "m", ""},
		{"panic", `panic: boom`, false, 0, "", ""},
		{"torn", `{"level":"INFO","msg":"cut`, false, 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lvl, msg, attrs, ok := parseChildLog([]byte(tc.line))
			if ok != tc.ok {
				t.Fatalf("ok %v", ok)
			}
			if !ok {
				return
			}
			var s []string
			for _, a := range attrs {
				s = append(s, a.String())
			}
			if lvl != tc.lvl || msg != tc.msg || strings.Join(s, " ") != tc.attrs {
				t.Fatalf("got %s %q [%s]", lvl, msg, strings.Join(s, " "))
			}
		})
	}
}

func TestLineWriter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   []string
	}{
		{"lines across writes", []string{"ab", "c\nde", "\n\nf"}, []string{"abc", "de", "", "f"}},
		{"long line cut", []string{"0123456789", "abc\nok\n"}, []string{"01234567", "ok"}},
		{"long line in one write", []string{"0123456789abc\nok"}, []string{"01234567", "ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			w := &lineWriter{max: 8, line: func(b []byte) { got = append(got, string(b)) }}
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("write: %d, %v", n, err)
				}
			}
			w.flush()
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("lines %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseVmHWM(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         uint64
		ok           bool
	}{
		{"status", "Name:\tbackupd\nVmPeak:\t  900000 kB\nVmHWM:\t   65432 kB\nVmRSS:\t   60000 kB\n", 65432 << 10, true},
		{"missing", "Name:\tbackupd\n", 0, false},
		{"bad unit", "VmHWM:\t12 MB\n", 0, false},
		{"bad number", "VmHWM:\tlots kB\n", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseVmHWM([]byte(tc.status))
			if got != tc.want || ok != tc.ok {
				t.Fatalf("got %d, %v", got, ok)
			}
		})
	}
}
