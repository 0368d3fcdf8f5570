package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/bench/workload"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "backupd-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "backupd")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type cli struct {
	t    *testing.T
	repo string
	// tmp is the processes' TMPDIR, writable by all as /tmp is.
	tmp string
	env []string
	// wrap, if set, runs the binary through a command (setpriv, to run as
	// another user).
	wrap []string
	// hooks reach into the in-process calls (globals).
	hooks testHooks
}

func newCLI(t *testing.T) *cli {
	c := &cli{t: t, repo: filepath.Join(t.TempDir(), "repo"), tmp: t.TempDir()}
	// The local cache of s3:// repositories and the temp files (packs on
	// their way to object storage) go to the test's own directories,
	// never the user's.
	c.env = append(os.Environ(), "BACKUPD_REPOSITORY="+c.repo, "BACKUPD_PASSWORD=correct horse",
		"XDG_CACHE_HOME="+filepath.Join(t.TempDir(), "xdg-cache"), "BACKUPD_CACHE_DIR=", "TMPDIR="+c.tmp)
	if err := os.Chmod(c.tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	return c
}

// run runs backupd and returns stdout, stderr and the exit code (-9 when
// killed by SIGKILL).
func (c *cli) run(extraEnv []string, args ...string) (string, string, int) {
	c.t.Helper()
	argv := append(append(append([]string(nil), c.wrap...), binary), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append([]string(nil), c.env...), extraEnv...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = -int(ws.Signal())
		} else {
			code = ee.ExitCode()
		}
	} else if err != nil {
		c.t.Fatal(err)
	}
	return so.String(), se.String(), code
}

func manifest(t *testing.T, root string) map[string]workload.Entry {
	t.Helper()
	m, err := workload.Manifest(root)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range m {
		if v.Type == "socket" || v.Type == "other" {
			delete(m, k)
		}
	}
	return m
}

func genVolume(t *testing.T, opt workload.Options) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "vol")
	if err := workload.Generate(src, opt); err != nil {
		t.Fatal(err)
	}
	return src
}

type summary struct {
	SnapshotID     string `json:"snapshot_id"`
	FilesNew       int    `json:"files_new"`
	FilesChanged   int    `json:"files_changed"`
	FilesUnchanged int    `json:"files_unchanged"`
	FilesSkipped   int    `json:"files_skipped"`
	Dirs           int    `json:"dirs"`
	DirsReused     int    `json:"dirs_reused"`
	BytesRead      int64  `json:"bytes_read"`
	BytesWritten   int64  `json:"bytes_written"`
}

func (c *cli) assertRestoreEquals(id string, want map[string]workload.Entry) {
	c.t.Helper()
	target := filepath.Join(c.t.TempDir(), "restore")
	c.restore(restoreOptions{Target: target}, id)
	if d := workload.Diff(want, manifest(c.t, target), true); len(d) > 0 {
		c.t.Fatalf("restore of %s differs:\n%s", id, strings.Join(d, "\n"))
	}
}

func TestCommandLineRoundTrip(t *testing.T) {
	c := newCLI(t)
	opt := workload.Options{Proxies: 3, ConsulServers: 1, Scale: 0.02, Seed: 5}
	src := genVolume(t, opt)
	// A volume root as Kubernetes leaves it with an fsGroup: setgid, group-writable.
	if err := os.Chmod(src, 0o770|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	c.init()
	want1 := manifest(t, src)
	s1 := c.backup(src)
	if s1.FilesNew == 0 || s1.FilesSkipped == 0 || s1.BytesWritten == 0 {
		t.Fatalf("first backup summary: %+v", s1)
	}
	if err := workload.Mutate(src, opt, 2); err != nil {
		t.Fatal(err)
	}
	want2 := manifest(t, src)
	rootAt2, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	s2 := c.backup(src)
	if s2.FilesChanged == 0 || s2.FilesUnchanged == 0 || s2.BytesRead >= s1.BytesRead {
		t.Fatalf("incremental summary: %+v", s2)
	}
	if snaps := c.snapshots("mesh"); len(snaps) != 2 {
		t.Fatalf("snapshots --json: %+v", snaps)
	}
	c.assertRestoreEquals(s1.SnapshotID[:8], want1)
	c.assertRestoreEquals("latest", want2)
	// diff -r is clean too (sockets are skipped by design).
	target := filepath.Join(t.TempDir(), "r")
	c.restore(restoreOptions{Filter: snapshotFilter{Policy: "mesh"}, Target: target}, "latest")
	// The target takes the source directory's own mode and mtime too.
	if fi, err := os.Stat(target); err != nil || fi.Mode() != rootAt2.Mode() || !fi.ModTime().Equal(rootAt2.ModTime()) {
		t.Fatalf("restored root: %v %v, source %v %v (%v)", fi.Mode(), fi.ModTime(), rootAt2.Mode(), rootAt2.ModTime(), err)
	}
	out, _ := exec.Command("diff", "-r", "--no-dereference", src, target).CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.Contains(line, "admin.sock") && !strings.Contains(line, ".workload-state.json") {
			t.Fatalf("diff -r: %s", out)
		}
	}
	c.check(checkOptions{ReadData: true})
	c.check(checkOptions{ReadDataSubset: "1/3"})
	// forget keeps the newest; prune with no grace frees the rest.
	c.forget(forgetOptions{Keep: snapshot.KeepPolicy{Last: 1}, Prune: true, Grace: 0})
	if snaps := c.snapshots(""); len(snaps) != 1 || snaps[0].ID != s2.SnapshotID {
		t.Fatalf("after forget: %+v", snaps)
	}
	c.check(checkOptions{ReadData: true})
	c.assertRestoreEquals("latest", want2)
	// Nothing changed since: every directory but the root is taken whole
	// from the parent; with --full-walk-every 1 every one is walked again.
	s3 := c.backup(src)
	if s3.DirsReused != s3.Dirs-1 || s3.BytesRead != 0 || s3.FilesUnchanged != s2.FilesNew+s2.FilesChanged+s2.FilesUnchanged {
		t.Fatalf("no-change backup summary: %+v (previous %+v)", s3, s2)
	}
	s4 := c.backup(src, func(o *backupOptions) { o.FullWalkEvery = 1 })
	if s4.DirsReused != 0 || s4.BytesRead != 0 || s4.FilesUnchanged != s3.FilesUnchanged || s4.Dirs != s3.Dirs {
		t.Fatalf("full-walk backup summary: %+v", s4)
	}
	c.assertRestoreEquals("latest", want2)
}

func TestExitCodes(t *testing.T) {
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.02})
	c.init()
	c.backup(src)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		msg  string
	}{
		{"unknown flag", nil, []string{"backup", "--nope", src}, exitUsage, "unknown flag: --nope"},
		{"missing policy", nil, []string{"backup", src}, exitUsage, "--policy is required"},
		{"missing target", nil, []string{"restore", "latest"}, exitUsage, "--target is required"},
		{"bad subset", nil, []string{"check", "--read-data-subset", "4/3"}, exitUsage, "--read-data-subset"},
		{"no keep rule", nil, []string{"forget"}, exitUsage, "--keep-last"},
		{"bad fault point", []string{"BACKUPD_FAULT=nowhere"}, []string{"check"}, exitUsage, "unknown fault point"},
		{"wrong password", []string{"BACKUPD_PASSWORD=wrong"}, []string{"snapshots"}, exitFailed, "wrong password"},
		{"no repository", []string{"BACKUPD_REPOSITORY=" + t.TempDir()}, []string{"snapshots"}, exitFailed, "no repository there"},
		{"unknown snapshot", nil, []string{"restore", "--target", t.TempDir(), "abcdef12"}, exitFailed, "no snapshot with id"},
		{"source missing", nil, []string{"backup", "--policy", "mesh", "/nonexistent/dir"}, exitFailed, "no such file"},
		{"unknown command", nil, []string{"bakup"}, exitUsage, `unknown command "bakup"`},
		{"unknown config subcommand", nil, []string{"config", "chek", "x.yaml"}, exitUsage, `unknown command "chek"`},
		{"missing argument", nil, []string{"backup", "--policy", "mesh"}, exitUsage, "takes one PATH, got 0"},
		{"extra argument", nil, []string{"snapshots", "extra"}, exitUsage, "takes no arguments"},
		{"extra restore argument", nil, []string{"restore", "--target", t.TempDir(), "latest", "more"}, exitUsage, "takes one SNAPSHOT-ID"},
		{"short id", nil, []string{"restore", "--target", t.TempDir(), "ab"}, exitUsage, "at least 4 hex characters"},
		{"not an id", nil, []string{"restore", "--target", t.TempDir(), "zzzzzz"}, exitUsage, "at least 4 hex characters"},
		{"negative prune grace", nil, []string{"prune", "--grace", "-5m"}, exitUsage, "--grace -5m0s"},
		{"negative check interval", nil, []string{"run", "--config", "x.yaml", "--config.check-interval", "-1s"}, exitUsage, "--config.check-interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := c.run(tc.env, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errOut, tc.msg)
			}
			if strings.Contains(errOut, "correct horse") {
				t.Fatal("password in output")
			}
		})
	}
}

// A repository of another format version, newer or older (version 1 stored
// trees as JSON), is refused before any key is tried, naming the version.
func TestOtherFormatVersionRefused(t *testing.T) {
	for _, v := range []int{repository.FormatVersion + 7, 1} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			c := newCLI(t)
			c.init()
			cfg := filepath.Join(c.repo, "config")
			b, _ := os.ReadFile(cfg)
			cur := fmt.Sprintf(`"version": %d`, repository.FormatVersion)
			if !strings.Contains(string(b), cur) {
				t.Fatalf("config %s does not hold %s", b, cur)
			}
			_ = os.Chmod(cfg, 0o600)
			_ = os.WriteFile(cfg, []byte(strings.Replace(string(b), cur, fmt.Sprintf(`"version": %d`, v), 1)), 0o600)
			g, _, _ := c.globals(false)
			err := runSnapshots(t.Context(), snapshotsOptions{}, g, nil)
			if code := exitCode(err); code != exitFailed || err == nil || !strings.Contains(err.Error(), fmt.Sprintf("format version %d is not supported", v)) {
				t.Fatalf("exit %d: %v", code, err)
			}
		})
	}
}

func TestCorruptionExitsThree(t *testing.T) {
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 3, ConsulServers: 1, Scale: 0.02})
	c.init()
	c.backup(src)
	packs, _ := filepath.Glob(filepath.Join(c.repo, "data", "*", "*"))
	for _, p := range packs {
		b, _ := os.ReadFile(p)
		b[len(b)/4] ^= 0x01
		_ = os.WriteFile(p, b, 0o600)
	}
	checkOut, _, code := c.run(nil, "check", "--read-data")
	if code != exitCorrupt || !strings.Contains(checkOut, "corrupt-blob") || !strings.Contains(checkOut, "affected: snapshot") {
		t.Fatalf("check exit %d:\n%s", code, checkOut)
	}
	// The JSON report ends with every damaged pack, each once.
	jsonOut, _, code := c.run(nil, "check", "--read-data", "--json")
	var rep struct {
		Damaged []string `json:"damaged"`
	}
	if err := json.Unmarshal([]byte(jsonOut), &rep); code != exitCorrupt || err != nil {
		t.Fatalf("check --json exit %d: %v\n%s", code, err, jsonOut)
	}
	slices.Sort(rep.Damaged)
	var want []string
	for _, p := range packs {
		want = append(want, "data/"+filepath.Base(p))
	}
	slices.Sort(want)
	if !slices.Equal(rep.Damaged, want) || strings.LastIndex(jsonOut, `"damaged"`) < strings.LastIndex(jsonOut, `"affected"`) {
		t.Errorf("damaged %v, want every pack %v, last in the report", rep.Damaged, want)
	}
	out, errOut, code := c.run(nil, "restore", "--target", t.TempDir(), "latest")
	if code != exitCorrupt || !strings.Contains(errOut, "files not restored") {
		t.Fatalf("restore exit %d:\n%s", code, errOut)
	}
	if strings.Contains(out, "restored snapshot") {
		t.Fatalf("a failed restore says it restored the snapshot:\n%s", out)
	}
}

func TestOverlapExitsFour(t *testing.T) {
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.02})
	c.init()
	// A live "backup" of the same policy and source: this test process
	// holds the lock object.
	abs, _ := filepath.Abs(src)
	lock := map[string]any{"exclusive": false, "hostname": hostname(t), "pid": os.Getpid(), "time": time.Now(),
		"command": "backup", "policy": "mesh", "source": abs, "owner": "other"}
	b, _ := json.Marshal(lock)
	_ = os.WriteFile(filepath.Join(c.repo, "locks", "0123456789abcdef"), b, 0o600)
	_, errOut, code := c.run(nil, "backup", "--policy", "mesh", src)
	if code != exitSkipped || !strings.Contains(errOut, "already running") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Scenario 1 with real processes: SIGKILL at each fault point of a backup.
// Afterwards check passes, every earlier snapshot restores byte-exact, and
// the next backup succeeds.
func TestSIGKILLDuringBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	c := newCLI(t)
	opt := workload.Options{Proxies: 8, ConsulServers: 1, Scale: 0.15, Seed: 9}
	src := genVolume(t, opt)
	c.init()
	oracle := map[string]map[string]workload.Entry{}
	take := func() {
		want := manifest(t, src)
		oracle[c.backup(src).SnapshotID] = want
	}
	take()
	points := []string{"after-chunk:3", "after-chunk:12", "after-pack-put:1", "after-pack-put:2", "after-index-write:1", "after-snapshot-write:1"}
	for _, fp := range points {
		if err := workload.Mutate(src, opt, 1); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := c.run([]string{"BACKUPD_FAULT=" + fp}, "backup", "--policy", "mesh", src)
		if code != -int(syscall.SIGKILL) {
			t.Fatalf("%s: backup was not killed (exit %d): %s", fp, code, errOut)
		}
		c.check(checkOptions{})
		take()
	}
	// Kills at random moments, too.
	r := rand.New(rand.NewPCG(1, 1))
	for i := range 5 {
		_ = workload.Mutate(src, opt, 1)
		cmd := exec.Command(binary, "backup", "--policy", "mesh", src)
		cmd.Env = c.env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(50+r.IntN(250)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if _, errOut, code := c.run(nil, "check"); code != 0 {
			t.Fatalf("random kill %d: check exit %d: %s", i, code, errOut)
		}
		take()
	}
	for id, want := range oracle {
		c.assertRestoreEquals(id[:8], want)
	}
	c.check(checkOptions{ReadData: true})
}

// Scenario 2: SIGKILL mid-restore leaves no half-written file under its
// final name, and a rerun converges to the exact tree.
func TestSIGKILLDuringRestore(t *testing.T) {
	c := newCLI(t)
	opt := workload.Options{Proxies: 4, ConsulServers: 1, Scale: 0.1, Seed: 4}
	src := genVolume(t, opt)
	c.init()
	want := manifest(t, src)
	c.backup(src)
	target := filepath.Join(t.TempDir(), "restore")
	for _, n := range []string{"1", "7", "30"} {
		_, errOut, code := c.run([]string{"BACKUPD_FAULT=restore-mid-file:" + n}, "restore", "--target", target, "latest")
		if code != -int(syscall.SIGKILL) {
			t.Fatalf("restore not killed at file %s (exit %d): %s", n, code, errOut)
		}
		for p, ent := range manifest(t, target) {
			if strings.Contains(p, ".backupd-restore-") {
				continue // a temp name: allowed
			}
			if ent.Type == "file" && ent.Hash != want[p].Hash {
				t.Fatalf("kill at file %s: %s is under its final name with wrong content", n, p)
			}
		}
	}
	c.restore(restoreOptions{Target: target}, "latest")
	got := manifest(t, target)
	if d := workload.Diff(want, got, true); len(d) > 0 {
		t.Fatalf("rerun did not converge:\n%s", strings.Join(d, "\n"))
	}
}
