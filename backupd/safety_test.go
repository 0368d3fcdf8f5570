package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/bench/workload"
)

// Flags are validated before anything is touched: a bad --grace after
// --keep-last 1 --prune removes no snapshot.
func TestForgetBadFlagRemovesNothing(t *testing.T) {
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.02})
	c.init()
	c.backup(src)
	c.backup(src)
	_, errOut, code := c.run(nil, "forget", "--keep-last", "1", "--prune", "--grace", "-5m")
	if code != exitUsage || !strings.Contains(errOut, "--grace -5m0s") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if n := len(c.snapshots("")); n != 2 {
		t.Fatalf("%d snapshots left after a refused forget, want 2", n)
	}
}

// A restore target that holds the repository, or lies inside it, is
// refused before anything is written: restore --delete there would delete
// the repository.
func TestRestoreRefusesTargetAroundRepository(t *testing.T) {
	parent := t.TempDir()
	c := newCLI(t)
	c.repo = filepath.Join(parent, "repo")
	c.env = append(c.env, "BACKUPD_REPOSITORY="+c.repo)
	src := genVolume(t, workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.02})
	c.init()
	c.backup(src)
	link := filepath.Join(t.TempDir(), "link-to-parent")
	if err := os.Symlink(parent, link); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{parent, link, filepath.Join(c.repo, "restored"), c.repo} {
		_, errOut, code := c.run(nil, "restore", "--delete", "--target", target, "latest")
		if code != exitUsage || !strings.Contains(errOut, "the repository") {
			t.Fatalf("restore --delete --target %s: exit %d: %s", target, code, errOut)
		}
	}
	c.check(checkOptions{ReadData: true})
	if _, err := os.Stat(filepath.Join(c.repo, "restored")); err == nil {
		t.Fatal("a refused restore created its target inside the repository")
	}
	// A source that holds its repository is backed up, with a warning.
	c2 := newCLI(t)
	src2 := genVolume(t, workload.Options{Proxies: 1, ConsulServers: 1, Scale: 0.01})
	c2.repo = filepath.Join(src2, "repo")
	c2.env = append(c2.env, "BACKUPD_REPOSITORY="+c2.repo)
	c2.init()
	_, errOut, code := c2.run(nil, "backup", "--policy", "mesh", src2)
	if code != exitOK || !strings.Contains(errOut, "the source contains the repository") {
		t.Fatalf("backup of a source holding its repository: exit %d: %s", code, errOut)
	}
}

// An unreadable newest snapshot is corruption, named, exit 3: restore
// latest does not silently restore the one before, restore by its id does
// not say "no snapshot", and snapshots lists it as damaged.
func TestUnreadableSnapshotIsNamed(t *testing.T) {
	c := newCLI(t)
	src := genVolume(t, workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.02})
	c.init()
	c.backup(src)
	if err := os.WriteFile(filepath.Join(src, "new-file"), []byte("only in the newest snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	newest := c.backup(src).SnapshotID
	p := filepath.Join(c.repo, "snapshots", newest)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	_ = os.Chmod(p, 0o600)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"latest", newest[:8]} {
		target := filepath.Join(t.TempDir(), "r")
		out, errOut, code := c.run(nil, "restore", "--target", target, ref)
		if code != exitCorrupt || !strings.Contains(errOut, newest[:8]) || !strings.Contains(errOut, "unreadable") {
			t.Fatalf("restore %s: exit %d: %s%s", ref, code, out, errOut)
		}
		if _, err := os.Stat(target); err == nil {
			t.Fatalf("restore %s wrote a target", ref)
		}
	}
	out, errOut, code := c.run(nil, "snapshots", "--json")
	var list []snapshotJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != exitCorrupt {
		t.Fatalf("snapshots --json: exit %d, %v: %s%s", code, err, out, errOut)
	}
	if len(list) != 2 || list[1].ID != newest || !list[1].Damaged || list[1].Error == "" {
		t.Fatalf("snapshots --json does not list %s as damaged: %+v", newest[:8], list)
	}
	out, _, _ = c.run(nil, "snapshots")
	if !strings.Contains(out, newest[:8]) || !strings.Contains(out, "damaged") {
		t.Fatalf("snapshots table does not show the damaged snapshot:\n%s", out)
	}
}

// Names with control characters are printed escaped, never raw to the
// terminal; empty lists print as [] in JSON.
func TestListingsEscapeNamesAndPrintEmptyLists(t *testing.T) {
	c := newCLI(t)
	src := filepath.Join(t.TempDir(), "vol\x1b[2J\n")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.init()
	c.backup(src)
	out, _, code := c.run(nil, "snapshots")
	if code != exitOK || strings.Contains(out, "\x1b") || !strings.Contains(out, `\x1b[2J\n`) {
		t.Fatalf("snapshots printed a raw control character (exit %d):\n%q", code, out)
	}
	out, _, code = c.run(nil, "forget", "--keep-last", "1")
	if code != exitOK || strings.Contains(out, "\x1b") {
		t.Fatalf("forget printed a raw control character (exit %d):\n%q", code, out)
	}
	out, _, code = c.run(nil, "check", "--json")
	if code != exitOK || strings.Contains(out, "null") || !strings.Contains(out, `"problems": []`) {
		t.Fatalf("check --json (exit %d):\n%s", code, out)
	}
	out, _, code = c.run(nil, "forget", "--json", "--keep-last", "1", "--policy", "none")
	if code != exitOK || strings.TrimSpace(out) != "[]" {
		t.Fatalf("forget --json with nothing to do (exit %d): %q", code, out)
	}
}

// unprivileged returns a cli whose commands run as a user that permissions
// stop (nobody, through setpriv, when the test runs as root), and a
// directory that user can write in.
func unprivileged(t *testing.T) (*cli, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "backupd-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(binary, 0o755); err != nil {
		t.Fatal(err)
	}
	c := newCLI(t)
	c.repo = filepath.Join(dir, "repo")
	c.env = append(c.env, "BACKUPD_REPOSITORY="+c.repo, "HOME="+dir)
	if os.Geteuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("running as root without setpriv: cannot make a file unreadable")
		}
		c.wrap = []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}
		// The test binary's directory must be reachable for that user.
		for d := filepath.Dir(binary); d != "/"; d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
				_ = os.Chmod(d, fi.Mode().Perm()|0o011)
			}
		}
	}
	return c, dir
}

// Scenario 35: a backup that could not read some files saves its snapshot
// but exits 5, not 0, naming the count; the files are listed in the log.
func TestBackupWithUnreadableFilesExitsFive(t *testing.T) {
	c, dir := unprivileged(t)
	src := filepath.Join(dir, "vol")
	if err := os.MkdirAll(filepath.Join(src, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"readable": 0o644, "data/secret.db": 0o000, "data/also-secret": 0o000} {
		if err := os.WriteFile(filepath.Join(src, name), []byte("content of "+name), mode); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(filepath.Join(src, name), mode)
	}
	if _, errOut, code := c.run(nil, "init"); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errOut)
	}
	out, errOut, code := c.run(nil, "backup", "--policy", "mesh", "--json", src)
	if code != exitIncomplete || !strings.Contains(errOut, "without 2 files that could not be read") || !strings.Contains(errOut, "secret.db") {
		t.Fatalf("backup with unreadable files: exit %d\n%s%s", code, out, errOut)
	}
	var sum backupSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.SnapshotID == "" || sum.Errors != 2 {
		t.Fatalf("the snapshot is saved and its summary printed: %v %+v", err, sum)
	}
	// A complete backup exits 0 again.
	for _, name := range []string{"data/secret.db", "data/also-secret"} {
		_ = os.Chmod(filepath.Join(src, name), 0o644)
	}
	if _, errOut, code := c.run(nil, "backup", "--policy", "mesh", src); code != exitOK {
		t.Fatalf("complete backup: exit %d: %s", code, errOut)
	}
}

// config check looks at the paths too: a source that is a file is an error
// (exit 2); a missing source is a warning (a volume may be mounted later).
func TestConfigCheckLooksAtPaths(t *testing.T) {
	c := newCLI(t)
	t.Setenv("BACKUPD_PASSWORD", "set for this check")
	dir := t.TempDir()
	file := filepath.Join(dir, "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, out, _ := c.globals(false)
	err := runConfigCheck(t.Context(), configCheckOptions{}, g, []string{writeDaemonConfig(t, dir, file, filepath.Join(dir, "repo"))})
	if exitCode(err) != exitUsage || !strings.Contains(out.String(), "policies[0].source: "+file+" is not a directory") {
		t.Fatalf("source that is a file: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	missing := filepath.Join(dir, "mnt", "vol")
	g, out, _ = c.globals(false)
	err = runConfigCheck(t.Context(), configCheckOptions{}, g, []string{writeDaemonConfig(t, dir, missing, filepath.Join(dir, "repo"))})
	if err != nil || !strings.Contains(out.String(), "warning: policies[0].source: "+missing+" does not exist") || !strings.Contains(out.String(), "ok:") {
		t.Fatalf("missing source: %v\n%s", err, out)
	}
}
