package tempdir

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHolderProcess is not a test: run by holder, it acquires a directory
// in $TEMPDIR_TEST_BASE, writes a file into it, prints its path and waits
// to be killed.
func TestHolderProcess(t *testing.T) {
	base := os.Getenv("TEMPDIR_TEST_BASE")
	if base == "" {
		t.Skip("helper process for the tests in this file")
	}
	d, err := Acquire(base, "backupd-")
	if err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(1)
	}
	if err := os.WriteFile(filepath.Join(d.Path(), "pack-1.tmp"), make([]byte, 4096), 0o600); err != nil {
		os.Exit(1)
	}
	os.Stdout.WriteString(d.Path() + "\n")
	time.Sleep(time.Minute)
	os.Exit(0)
}

// holder starts a process that holds a directory in base; it returns the
// directory and the process.
func holder(t *testing.T, base string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHolderProcess$")
	cmd.Env = append(os.Environ(), "TEMPDIR_TEST_BASE="+base)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, base) {
		t.Fatalf("holder process printed %q (%v), want its directory", line, err)
	}
	return strings.TrimSpace(line), cmd
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// A directory whose process was SIGKILLed is removed, with what it held,
// by the next Acquire; one whose process lives is left alone.
func TestAcquireSweepsDeadKeepsLive(t *testing.T) {
	base := t.TempDir()
	dead, killed := holder(t, base)
	live, _ := holder(t, base)
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = killed.Wait()
	if !exists(t, filepath.Join(dead, "pack-1.tmp")) {
		t.Fatal("the killed process's file is gone before anyone swept: the test proves nothing")
	}
	d, err := Acquire(base, "backupd-")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Release()
	if exists(t, dead) {
		t.Errorf("the directory %s of the killed process is still there after Acquire", dead)
	}
	if !exists(t, filepath.Join(live, "pack-1.tmp")) {
		t.Errorf("Acquire removed the directory %s of a live process", live)
	}
	if d.Path() == live || filepath.Dir(d.Path()) != base || !strings.HasPrefix(filepath.Base(d.Path()), "backupd-") {
		t.Errorf("Acquire made %s, want a new backupd-* directory in %s", d.Path(), base)
	}
}

// Two holders in one process (in-process runs of the CLI) do not sweep
// each other, and Release removes the directory and its files.
func TestAcquireInProcessAndRelease(t *testing.T) {
	base := t.TempDir()
	a, err := Acquire(base, "backupd-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.Path(), "pack-1.tmp"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := Acquire(base, "backupd-")
	if err != nil {
		t.Fatal(err)
	}
	if !exists(t, filepath.Join(a.Path(), "pack-1.tmp")) {
		t.Fatal("the second Acquire removed the first one's directory")
	}
	for _, d := range []*Dir{a, b} {
		if err := d.Release(); err != nil {
			t.Fatal(err)
		}
		if err := d.Release(); err != nil {
			t.Errorf("second Release: %v", err)
		}
		if exists(t, d.Path()) {
			t.Errorf("%s is still there after Release", d.Path())
		}
	}
	if ents, _ := os.ReadDir(base); len(ents) != 0 {
		t.Errorf("%s holds %d entries after both released, want none", base, len(ents))
	}
}

// Sweep leaves what is not its own: other names, files, a directory with
// the prefix but without the Marker (a user's), and a directory still
// being made unless it is older than abandonedAfter.
func TestSweepLeavesOthers(t *testing.T) {
	base := t.TempDir()
	for _, p := range []string{"other-dir", newPrefix + "backupd-young", "backupd-users-own"} {
		if err := os.Mkdir(filepath.Join(base, p), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	old := filepath.Join(base, newPrefix+"backupd-old")
	if err := os.Mkdir(old, 0o700); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * abandonedAfter)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "backupd-file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Sweep(base, "backupd-"); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"other-dir": true, newPrefix + "backupd-young": true, newPrefix + "backupd-old": false,
		"backupd-file": true, "backupd-users-own": true}
	for name, want := range want {
		if got := exists(t, filepath.Join(base, name)); got != want {
			t.Errorf("after Sweep, %s exists = %v, want %v", name, got, want)
		}
	}
	if err := Sweep(filepath.Join(base, "missing"), "backupd-"); err != nil {
		t.Errorf("Sweep of a missing base: %v, want nil", err)
	}
	if _, err := Acquire(base, "a/b"); err == nil || !strings.Contains(err.Error(), `"a/b"`) {
		t.Errorf("Acquire with prefix a/b: %v, want an error naming it", err)
	}
}

// RemoveAll removes a restored tree with read-only directories (a
// non-root drill cannot delete from them as they are).
func TestRemoveAllReadOnlyDirs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "drill")
	sub := filepath.Join(dir, "ro", "deeper")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "f"), []byte("x"), 0o400); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{sub, filepath.Join(dir, "ro")} {
		if err := os.Chmod(d, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if exists(t, dir) {
		t.Fatal("the tree is still there after RemoveAll")
	}
}
