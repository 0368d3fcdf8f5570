package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/repository"
)

// In-process calls of the commands' runX functions, without cobra or a
// subprocess. Tests of exit codes and signals run the binary (cli.run).

// globals returns the options every command shares, for c's repository,
// with output into the returned buffers.
func (c *cli) globals(jsonOut bool) (*globalOptions, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	g := &globalOptions{
		repo: c.repo, json: jsonOut, logFormat: "text", logLevel: "info",
		// GoMemLimit: leave the test process's memory limit alone.
		env:    environment{Password: "correct horse", GoMemLimit: true},
		stdout: &out, stderr: &errOut, hooks: c.hooks,
	}
	// What run does when the command ends.
	c.t.Cleanup(func() {
		if err := g.releaseScratch(); err != nil {
			c.t.Error(err)
		}
	})
	return g, &out, &errOut
}

// call runs fn in-process and returns what it printed; an error fails the test.
func call[O any](c *cli, fn func(context.Context, O, *globalOptions, []string) error, opts O, jsonOut bool, args ...string) string {
	c.t.Helper()
	g, out, errOut := c.globals(jsonOut)
	if err := fn(c.t.Context(), opts, g, args); err != nil {
		c.t.Fatalf("%v (exit %d)\nstdout: %s\nstderr: %s", err, exitCode(err), out, errOut)
	}
	return out.String()
}

func (c *cli) init() { c.t.Helper(); call(c, runInit, initOptions{}, false) }

func (c *cli) check(opts checkOptions) string { c.t.Helper(); return call(c, runCheck, opts, false) }

func (c *cli) restore(opts restoreOptions, ref string) string {
	c.t.Helper()
	return call(c, runRestore, opts, false, ref)
}

func (c *cli) forget(opts forgetOptions) string { c.t.Helper(); return call(c, runForget, opts, false) }

// snapshots lists the snapshots of policy ("" for all) through --json.
func (c *cli) snapshots(policy string) []snapshotJSON {
	c.t.Helper()
	var snaps []snapshotJSON
	if err := json.Unmarshal([]byte(call(c, runSnapshots, snapshotsOptions{Filter: snapshotFilter{Policy: policy}}, true)), &snaps); err != nil {
		c.t.Fatal(err)
	}
	return snaps
}

// defaultBackup returns backup's defaults, as its flags set them, for
// policy mesh.
func defaultBackup() backupOptions {
	return backupOptions{Policy: "mesh", AppendOnly: archiver.DefaultAppendOnly, FullReadEvery: 10, FullWalkEvery: 10, MaxShrink: 0.9}
}

// backup backs src up as policy mesh, with mod applied to the defaults.
func (c *cli) backup(src string, mod ...func(*backupOptions)) summary {
	c.t.Helper()
	opts := defaultBackup()
	for _, m := range mod {
		m(&opts)
	}
	var s summary
	if err := json.Unmarshal([]byte(call(c, runBackup, opts, true, src)), &s); err != nil {
		c.t.Fatal(err)
	}
	return s
}

// The flags' defaults are the ones the in-process calls use.
func TestBackupFlagDefaults(t *testing.T) {
	g, _, _ := (&cli{t: t}).globals(false)
	f := newBackupCommand(g).Flags()
	want := defaultBackup()
	for name, v := range map[string]string{
		"full-read-every": "10", "full-walk-every": "10", "max-shrink": "0.9",
		"append-only": "[" + strings.Join(want.AppendOnly, ",") + "]",
	} {
		if got := f.Lookup(name).DefValue; got != v {
			t.Errorf("--%s default %s, the in-process calls use %s", name, got, v)
		}
	}
}

// openRepo opens c's repository in this process, as a command would, with
// its index loaded when withIndex.
func (c *cli) openRepo(withIndex bool) *repository.Repo {
	c.t.Helper()
	be, err := local.Open(c.repo, local.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	r, err := repository.Open(c.t.Context(), be, []byte("correct horse"), repository.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	if withIndex {
		if err := r.LoadIndex(c.t.Context()); err != nil {
			c.t.Fatal(err)
		}
	}
	return r
}
