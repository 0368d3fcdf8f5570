package main

import (
	"encoding/json"
	"os"
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
