package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/bench/workload"
)

// The passwords of these tests; none may appear in any output.
const (
	keyPW0 = "correct horse" // the cli's own
	keyPW1 = "second secret battery"
	keyPW2 = "third secret staple"
)

// callAs runs fn in-process with password pw and returns what it printed
// and its error.
func callAs[O any](c *cli, pw string, fn func(context.Context, O, *globalOptions, []string) error, opts O, jsonOut bool, args ...string) (string, string, error) {
	c.t.Helper()
	g, out, errOut := c.globals(jsonOut)
	g.env.Password = pw
	err := fn(c.t.Context(), opts, g, args)
	return out.String(), errOut.String(), err
}

// noSecrets fails the test if any password of these tests is in s.
func noSecrets(t *testing.T, what string, s ...string) {
	t.Helper()
	for _, o := range s {
		for _, pw := range []string{keyPW0, keyPW1, keyPW2} {
			if strings.Contains(o, pw) {
				t.Fatalf("%s: a password is in the output:\n%s", what, o)
			}
		}
	}
}

func writePasswordFile(t *testing.T, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// listKeys runs key list --json in-process with password pw.
func listKeys(c *cli, pw string) []keyJSON {
	c.t.Helper()
	out, errOut, err := callAs(c, pw, runKeyList, keyListOptions{}, true)
	noSecrets(c.t, "key list", out, errOut)
	if err != nil {
		c.t.Fatalf("key list: %v\n%s", err, errOut)
	}
	var keys []keyJSON
	if err := json.Unmarshal([]byte(out), &keys); err != nil || keys == nil {
		c.t.Fatalf("key list --json: %v\n%s", err, out)
	}
	return keys
}

func currentKey(t *testing.T, keys []keyJSON) string {
	t.Helper()
	cur := ""
	for _, k := range keys {
		if k.Current {
			if cur != "" {
				t.Fatalf("two current keys: %+v", keys)
			}
			cur = k.ID
		}
	}
	if cur == "" {
		t.Fatalf("no current key: %+v", keys)
	}
	return cur
}

// restoreAs restores latest with password pw (in-process) and compares it
// with want.
func restoreAs(c *cli, pw string, want map[string]workload.Entry) {
	c.t.Helper()
	target := filepath.Join(c.t.TempDir(), "restore")
	out, errOut, err := callAs(c, pw, runRestore, restoreOptions{Target: target}, false, "latest")
	noSecrets(c.t, "restore", out, errOut)
	if err != nil {
		c.t.Fatalf("restore with the password: %v", err)
	}
	if d := workload.Diff(want, manifest(c.t, target), true); len(d) > 0 {
		c.t.Fatalf("restore differs:\n%s", strings.Join(d, "\n"))
	}
}

// Issue 14: key list, add, remove and passwd, in process, with their
// refusals.
func TestKeyCommands(t *testing.T) {
	c := newCLI(t)
	c.init()
	src := genVolume(t, workload.Options{Proxies: 1, ConsulServers: 1, Scale: 0.01, Seed: 3})
	want := manifest(t, src)
	c.backup(src)
	pw1, pw2 := writePasswordFile(t, keyPW1), writePasswordFile(t, keyPW2)

	keys := listKeys(c, keyPW0)
	if len(keys) != 1 || !keys[0].Current || keys[0].Hostname != hostname(t) || keys[0].Created == "" || keys[0].KDF != "argon2id" ||
		keys[0].Params == nil || keys[0].Params.Time != 2 || keys[0].Params.MemoryKiB != 19456 || keys[0].Params.Threads != 2 ||
		keys[0].Short != keys[0].ID[:8] || keys[0].Damaged {
		t.Fatalf("key list after init: %+v", keys)
	}
	k0 := keys[0].ID

	// add: a key for a new password, the same master key.
	out, errOut, err := callAs(c, keyPW0, runKeyAdd, keyAddOptions{NewPasswordFile: pw1}, true)
	noSecrets(t, "key add", out, errOut)
	var added struct {
		ID string `json:"id"`
	}
	if err != nil || json.Unmarshal([]byte(out), &added) != nil || len(added.ID) != 64 {
		t.Fatalf("key add: %v\n%s%s", err, out, errOut)
	}
	k1 := added.ID
	keys = listKeys(c, keyPW1)
	if len(keys) != 2 || currentKey(t, keys) != k1 {
		t.Fatalf("key list with the new password: %+v", keys)
	}
	if cur := currentKey(t, listKeys(c, keyPW0)); cur != k0 {
		t.Fatalf("the old password opened %s, want %s", cur, k0)
	}
	restoreAs(c, keyPW1, want)
	// The table marks the key in use.
	out, _, err = callAs(c, keyPW1, runKeyList, keyListOptions{}, false)
	if err != nil || !strings.Contains(out, "*  "+k1[:8]+"  ") || !strings.Contains(out, "   "+k0[:8]+"  ") || !strings.Contains(out, "argon2id t=2 m=19456 KiB p=2") {
		t.Fatalf("key list table: %v\n%s", err, out)
	}

	// remove: not the key in use; bad, unknown ids are bad usage.
	for _, tc := range []struct {
		id   string
		code int
		msg  string
	}{
		{k0[:8], exitFailed, "refusing to remove the key file the password opened"},
		{"abc", exitUsage, "at least 4 hex characters"},
		{"wxyz", exitUsage, "at least 4 hex characters"},
		{otherPrefix(k0, k1), exitUsage, "no key file with that id"},
	} {
		out, errOut, err := callAs(c, keyPW0, runKeyRemove, keyRemoveOptions{}, false, tc.id)
		noSecrets(t, "key remove", out, errOut, errString(err))
		if code := exitCode(err); code != tc.code || !strings.Contains(errString(err), tc.msg) {
			t.Fatalf("key remove %s: exit %d (want %d): %v", tc.id, code, tc.code, err)
		}
	}
	if n := len(listKeys(c, keyPW0)); n != 2 {
		t.Fatalf("a refused remove removed a key: %d left", n)
	}
	out, errOut, err = callAs(c, keyPW1, runKeyRemove, keyRemoveOptions{}, false, k0[:6])
	noSecrets(t, "key remove", out, errOut)
	if err != nil || !strings.Contains(out, "removed key "+k0[:8]) {
		t.Fatalf("key remove: %v\n%s", err, out)
	}
	if _, _, err := callAs(c, keyPW0, runKeyList, keyListOptions{}, false); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("the removed key's password: %v", err)
	}
	// The last key stays.
	_, _, err = callAs(c, keyPW1, runKeyRemove, keyRemoveOptions{}, false, k1[:8])
	if code := exitCode(err); code != exitFailed || !errors.Is(err, repository.ErrLastKey) {
		t.Fatalf("removing the last key: exit %d, %v", code, err)
	}

	// passwd: the key in use replaced; other keys kept.
	if _, _, err := callAs(c, keyPW1, runKeyAdd, keyAddOptions{NewPasswordFile: pw1}, false); err != nil {
		t.Fatal(err)
	}
	before := listKeys(c, keyPW1) // the first key with keyPW1 opens it
	cur := currentKey(t, before)
	out, errOut, err = callAs(c, keyPW1, runKeyPasswd, keyPasswdOptions{NewPasswordFile: pw2}, true)
	noSecrets(t, "key passwd", out, errOut)
	var changed struct {
		ID      string `json:"id"`
		Removed string `json:"removed"`
	}
	if err != nil || json.Unmarshal([]byte(out), &changed) != nil || changed.Removed != cur || len(changed.ID) != 64 {
		t.Fatalf("key passwd: %v\n%s", err, out)
	}
	after := listKeys(c, keyPW2)
	if len(after) != 2 || currentKey(t, after) != changed.ID {
		t.Fatalf("after passwd: %+v", after)
	}
	for _, k := range after {
		if k.ID == cur {
			t.Fatalf("the replaced key %s is still there", cur)
		}
	}
	restoreAs(c, keyPW2, want)

	// A damaged key file is listed as damaged.
	if err := os.WriteFile(filepath.Join(c.repo, "keys", "0badbadbad"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys = listKeys(c, keyPW2)
	damaged := 0
	for _, k := range keys {
		if k.Damaged {
			damaged++
			if k.ID != "0badbadbad" || !strings.Contains(k.Error, "keys/0badbadbad is damaged") || k.Params != nil {
				t.Fatalf("damaged key: %+v", k)
			}
		}
	}
	if len(keys) != 3 || damaged != 1 {
		t.Fatalf("key list with a damaged key file: %+v", keys)
	}
	out, _, err = callAs(c, keyPW2, runKeyList, keyListOptions{}, false)
	if err != nil || !strings.Contains(out, "\n   0badbadb  -  ") || !strings.Contains(out, "damaged: key file keys/0badbadbad is damaged: not valid JSON") {
		t.Fatalf("key list table: %v\n%s", err, out)
	}
}

// otherPrefix returns 8 hex characters that start neither a nor b.
func otherPrefix(a, b string) string {
	for _, p := range []string{"00000000", "ffffffff", "12345678"} {
		if !strings.HasPrefix(a, p) && !strings.HasPrefix(b, p) {
			return p
		}
	}
	panic("unreachable")
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// The key commands' usage errors exit 2 and touch nothing; a held
// exclusive lock stops add, remove and passwd. No password is printed.
func TestKeyExitCodesAndLock(t *testing.T) {
	c := newCLI(t)
	c.init()
	pw1 := writePasswordFile(t, keyPW1)
	keyFiles := func() []string { return objects(t, c.repo, "keys") }
	k0 := keyFiles()[0]
	// A copy of the key file under a name sharing its first 4 characters.
	b, err := os.ReadFile(filepath.Join(c.repo, "keys", k0))
	if err != nil {
		t.Fatal(err)
	}
	twin := k0[:4] + strings.Repeat("0", 60)
	if twin == k0 {
		twin = k0[:4] + strings.Repeat("1", 60)
	}
	if err := os.WriteFile(filepath.Join(c.repo, "keys", twin), b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown subcommand", []string{"key", "rotate"}, exitUsage, `unknown command "rotate" for "backupd key"`},
		{"remove without id", []string{"key", "remove"}, exitUsage, "takes one key ID, got 0"},
		{"remove two ids", []string{"key", "remove", k0[:8], twin[:8]}, exitUsage, "takes one key ID, got 2"},
		{"remove short id", []string{"key", "remove", "ab"}, exitUsage, "at least 4 hex characters"},
		{"remove unknown id", []string{"key", "remove", otherPrefix(k0, twin)}, exitUsage, "no key file with that id"},
		{"remove ambiguous id", []string{"key", "remove", k0[:4]}, exitUsage, "ambiguous"},
		{"add without a new password", []string{"key", "add"}, exitUsage, "no new password"},
		{"passwd without a new password", []string{"key", "passwd"}, exitUsage, "no new password"},
		{"new password flag", []string{"key", "add", "--new-password", keyPW1}, exitUsage, "unknown flag"},
		{"missing new password file", []string{"key", "passwd", "--new-password-file", "/nonexistent/pw"}, exitFailed, "read password file"},
		{"list argument", []string{"key", "list", "x"}, exitUsage, "takes no arguments"},
		{"wrong password", []string{"key", "passwd", "--new-password-file", pw1, "--password-file", pw1}, exitFailed, "wrong password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := c.run(nil, tc.args...)
			noSecrets(t, tc.name, out, errOut)
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errOut, tc.msg)
			}
		})
	}
	if n := len(keyFiles()); n != 2 {
		t.Fatalf("%d key files after refused commands, want 2", n)
	}
	// A live exclusive lock (this test process holds it).
	lock, _ := json.Marshal(map[string]any{"exclusive": true, "hostname": hostname(t), "pid": os.Getpid(), "time": time.Now(),
		"command": "prune", "owner": "other"})
	if err := os.WriteFile(filepath.Join(c.repo, "locks", "0123456789abcdef"), lock, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"key", "add", "--new-password-file", pw1},
		{"key", "passwd", "--new-password-file", pw1},
		{"key", "remove", twin[:8]},
	} {
		out, errOut, code := c.run(nil, args...)
		noSecrets(t, args[1], out, errOut)
		if code != exitFailed || !strings.Contains(errOut, "repository is locked") {
			t.Fatalf("%v under a live lock: exit %d: %s", args, code, errOut)
		}
	}
	if n := len(keyFiles()); n != 2 {
		t.Fatalf("%d key files after locked commands, want 2", n)
	}
}

// Scenario: SIGKILL at each fault point of key passwd. Afterwards the old
// or the new password (both, until the old key file is removed) opens the
// repository and its data restores byte-exact; the dead process's lock
// does not stop the next key change.
func TestKeyPasswdKilledAtEachFaultPoint(t *testing.T) {
	src := genVolume(t, workload.Options{Proxies: 1, ConsulServers: 1, Scale: 0.01, Seed: 7})
	want := manifest(t, src)
	for _, tc := range []struct {
		point        string
		oldOK, newOK bool
	}{
		{"after-key-write", true, true},
		{"before-key-remove", true, true},
		{"after-key-remove", false, true},
	} {
		t.Run(tc.point, func(t *testing.T) {
			c := newCLI(t)
			c.init()
			c.backup(src)
			pw1, pw2 := writePasswordFile(t, keyPW1), writePasswordFile(t, keyPW2)
			out, errOut, code := c.run([]string{"BACKUPD_FAULT=" + tc.point}, "key", "passwd", "--new-password-file", pw1)
			noSecrets(t, "key passwd", out, errOut)
			if code != -int(syscall.SIGKILL) {
				t.Fatalf("key passwd not killed at %s (exit %d): %s", tc.point, code, errOut)
			}
			working := ""
			for pw, ok := range map[string]bool{keyPW0: tc.oldOK, keyPW1: tc.newOK} {
				out, errOut, code := c.run([]string{"BACKUPD_PASSWORD=" + pw}, "snapshots")
				noSecrets(t, "snapshots", out, errOut)
				if (code == 0) != ok {
					t.Fatalf("after a kill at %s, password %d opens: exit %d, want it to open: %v\n%s", tc.point, len(pw), code, ok, errOut)
				}
				if ok {
					restoreAs(c, pw, want)
					working = pw
				}
			}
			// The next passwd takes the lock the killed process left.
			out, errOut, code = c.run([]string{"BACKUPD_PASSWORD=" + working}, "key", "passwd", "--new-password-file", pw2)
			noSecrets(t, "key passwd", out, errOut)
			if code != 0 {
				t.Fatalf("key passwd after the kill: exit %d: %s", code, errOut)
			}
			restoreAs(c, keyPW2, want)
		})
	}
}

// Two processes removing each other's key at once (one opened by each
// password): the exclusive lock, and the check that the key in use still
// exists, leave a key that opens the repository, every time.
func TestKeyConcurrentRemovesKeepAKey(t *testing.T) {
	pw1 := writePasswordFile(t, keyPW1)
	for round := range 3 {
		c := newCLI(t)
		c.init()
		if _, _, err := callAs(c, keyPW0, runKeyAdd, keyAddOptions{NewPasswordFile: pw1}, false); err != nil {
			t.Fatal(err)
		}
		k0, k1 := currentKey(t, listKeys(c, keyPW0)), currentKey(t, listKeys(c, keyPW1))
		var wg sync.WaitGroup
		codes := make([]int, 2)
		outs := make([]string, 2)
		for i, job := range []struct{ pw, remove string }{{keyPW0, k1}, {keyPW1, k0}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(binary, "key", "remove", job.remove[:8])
				cmd.Env = append(append([]string(nil), c.env...), "BACKUPD_PASSWORD="+job.pw)
				b, err := cmd.CombinedOutput()
				outs[i] = string(b)
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					codes[i] = ee.ExitCode()
				} else if err != nil {
					codes[i] = -1
				}
			}()
		}
		wg.Wait()
		noSecrets(t, "key remove", outs...)
		opened := 0
		for _, pw := range []string{keyPW0, keyPW1} {
			if _, _, code := c.run([]string{"BACKUPD_PASSWORD=" + pw}, "snapshots"); code == 0 {
				opened++
			}
		}
		if opened == 0 || len(objects(t, c.repo, "keys")) == 0 {
			t.Fatalf("round %d: no password opens the repository; exits %v:\n%s\n%s", round, codes, outs[0], outs[1])
		}
		if codes[0] == 0 && codes[1] == 0 {
			t.Fatalf("round %d: both removes succeeded", round)
		}
	}
}
