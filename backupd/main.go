// Command backupd backs up service-mesh volumes into an encrypted,
// deduplicating, crash-safe repository, and proves the backups restorable.
//
// This file is the only wiring: flags are parsed here into option structs
// that are passed down; nothing is registered globally.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/repository"
)

// Exit codes (documented in the README and in --help).
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitCorrupt = 3
	exitSkipped = 4
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr *os.File) int {
	cmd := newRootCommand(stdout, stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "backupd: %v\n", err)
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, archiver.ErrOverlap):
		return exitSkipped
	case errors.Is(err, repository.ErrCorrupt):
		return exitCorrupt
	case errors.Is(err, errUsage):
		return exitUsage
	}
	return exitFailed
}
