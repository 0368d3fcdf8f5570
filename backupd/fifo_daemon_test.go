package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/repository"
)

// Scenario: a FIFO planted in the source where the newest snapshot has a
// file, while the policy's backups are refused (another backup of the same
// policy and source holds its lock), so every cycle's scrub meets the FIFO.
// The scrub never waits on it, and SIGTERM then ends the daemon, exit 0,
// within the documented bound (stopGrace) and without the bound's forced
// exit. Before the fix the scrub hung in open(2) forever, every schedule
// stopped and SIGTERM was ignored.
func TestDaemonSIGTERMWithFIFOPlanted(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	c := newCLI(t)
	c.init()
	src := t.TempDir()
	for name, content := range map[string]string{"raft.db": "pages", "serf.keyring": "keys"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.backup(src)
	fifo := filepath.Join(src, "raft.db")
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// A writer releases a scrub stuck opening the FIFO, so that a failing
	// run leaves nothing behind.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	repo := c.openRepo(false)
	lock, err := repo.Lock(t.Context(), repository.LockOptions{Command: "backup", Policy: "mesh", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()

	d := startDaemon(t, c, writeDaemonConfig(t, t.TempDir(), src, c.repo), freePort(t))
	// The failure guards below only bound a hang.
	deadline := time.Now().Add(90 * time.Second)
	for !scrubFinished(d.logs()) {
		if time.Now().After(deadline) {
			t.Fatalf("no scrub finished: it waits on the FIFO\n%s", tail(d.logs(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, tail(d.logs(), 3000))
		}
	case <-time.After(stopGrace + 15*time.Second):
		_ = d.cmd.Process.Kill()
		<-exited
		t.Fatalf("SIGTERM did not end the daemon within %s\n%s", stopGrace, tail(d.logs(), 3000))
	}
	if strings.Contains(d.logs(), stopGraceMsg) {
		t.Fatalf("the run had to be abandoned at SIGTERM: it was stuck\n%s", tail(d.logs(), 3000))
	}
}

// scrubFinished reports whether the daemon's JSON log records a finished
// scrub run.
func scrubFinished(logs string) bool {
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"msg":"run finished"`) && strings.Contains(line, `"kind":"scrub"`) {
			return true
		}
	}
	return false
}

// The bound holds even for a run stuck where cancellation cannot reach it:
// once the grace has passed after the signal, the daemon stops waiting for
// it, says so, and exits as stopped (0).
func TestSIGTERMGraceAbandonsAStuckRun(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the signal
	returned := make(chan error, 1)
	go func() {
		returned <- waitStopped(ctx, log, func() error { <-stuck; return nil }, 10*time.Millisecond)
	}()
	select {
	case err := <-returned:
		if !errors.Is(err, context.Canceled) || !strings.Contains(logs.String(), stopGraceMsg) {
			t.Fatalf("waitStopped: %v; log %q", err, logs.String())
		}
	case <-time.After(30 * time.Second): // a failure guard
		t.Fatal("waitStopped waits for a stuck run forever")
	}
	// A run that stops in time is waited for and its result returned.
	want := errors.New("run failed")
	if err := waitStopped(t.Context(), log, func() error { return want }, time.Hour); err != want {
		t.Fatalf("waitStopped: %v, want %v", err, want)
	}
}
