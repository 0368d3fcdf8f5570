// Command backupd backs up service-mesh volumes into an encrypted,
// deduplicating, crash-safe repository, and proves the backups restorable.
//
// This file is the process's wiring: it reads the environment, the standard
// streams and the signals once, builds the command tree and turns the result
// into an exit code. Each command lives in its own cmd_*.go file: its flags
// fill an options struct, and its runX(ctx, opts, globals, args) does the
// work, so tests call it in-process. global.go holds what every command
// shares: logging, the password, opening a repository, progress and output.
// Nothing is registered globally.
//
// Imports: being the wiring, the main package may import everything: the
// engine packages, collectors/, exporter/ and the Prometheus client, but not
// bench/ (the demo's simulator is bench/cmd/simulate). Nothing imports it,
// and no engine package may import collectors/, exporter/ or Prometheus in
// its place (docs/DESIGN.md §2.3).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repository/cache"
)

// Exit codes (documented in the README and in --help).
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitCorrupt = 3
	exitSkipped = 4
	// exitIncomplete: a backup saved its snapshot without files it could
	// not read.
	exitIncomplete = 5
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
	env := environment{
		Repository:   os.Getenv("BACKUPD_REPOSITORY"),
		Password:     os.Getenv("BACKUPD_PASSWORD"),
		PasswordFile: os.Getenv("BACKUPD_PASSWORD_FILE"),
		Fault:        os.Getenv("BACKUPD_FAULT"),
		ChildFault:   os.Getenv("BACKUPD_CHILD_FAULT"),
		GoMemLimit:   os.Getenv("GOMEMLIMIT") != "",

		S3PathStyle:      os.Getenv("BACKUPD_S3_PATH_STYLE"),
		S3CAFile:         os.Getenv("BACKUPD_S3_CA_FILE"),
		StorageTimeout:   os.Getenv("BACKUPD_STORAGE_TIMEOUT"),
		StorageRetryFor:  os.Getenv("BACKUPD_STORAGE_RETRY_FOR"),
		Uploads:          os.Getenv("BACKUPD_UPLOADS"),
		S3PartSize:       os.Getenv("BACKUPD_S3_PART_SIZE"),
		S3StaleUploadAge: os.Getenv("BACKUPD_S3_STALE_UPLOAD_AGE"),
		CacheDir:         os.Getenv("BACKUPD_CACHE_DIR"),
		AWSEndpointURL:   os.Getenv("AWS_ENDPOINT_URL"),
		AWSEndpointURLS3: os.Getenv("AWS_ENDPOINT_URL_S3"),
	}
	if root, err := cache.DefaultRoot(); err == nil {
		env.CacheRoot = root
	}
	if limit, err := memlimit.FromCgroup(); err == nil {
		env.CgroupMemory = limit
	}
	os.Exit(run(ctx, os.Args[1:], env, streams{in: os.Stdin, out: os.Stdout, err: os.Stderr}))
}

// run executes one command line and returns its exit code.
func run(ctx context.Context, args []string, env environment, std streams) int {
	cmd, g := newRootCommand(env, std)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if rerr := g.releaseScratch(); rerr != nil {
		fmt.Fprintf(std.err, "backupd: %v\n", rerr)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(std.err, "backupd: %v\n", err)
	return exitCode(err)
}

// exitCode maps an error returned by a command to its documented exit code.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, archiver.ErrOverlap):
		return exitSkipped
	case errors.Is(err, repository.ErrCorrupt):
		return exitCorrupt
	}
	return exitFailed
}
