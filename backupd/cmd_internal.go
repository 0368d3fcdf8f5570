package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/collectors"
)

// newInternalCommand is `backupd internal`, hidden from --help: commands
// backupd runs itself, not a user. backup-run is a daemon's backup in a
// child process (--isolate-runs; docs/DESIGN.md §3.6).
func newInternalCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:    "internal",
		Short:  "Commands backupd runs itself",
		Hidden: true,
	}
	unknownSubcommand(c)
	c.AddCommand(&cobra.Command{
		Use:   "backup-run",
		Short: "Run one backup of a daemon in a child process: the request on the standard input, JSON lines on the standard output",
		Long: `Run by 'backupd run --isolate-runs' and 'backupd agent': the daemon writes
the request (repository, password, policy) on the standard input as JSON,
this process backs up and reports its lock, its progress and the result as
JSON lines on the standard output, and logs in JSON on the standard error.
SIGTERM stops the backup (its packs are indexed, its lock released). Not
for use by hand.`,
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackupChild(cmd.Context(), g)
		},
	})
	return c
}

// childOOMScoreAdj is a backup child's oom_score_adj (-1000 to 1000; the
// daemon keeps its own, 0 by default).
const childOOMScoreAdj = "500"

// runBackupChild serves one backup request of the daemon. BACKUPD_FAULT is
// not armed here: a child's fault point comes in the request
// (BACKUPD_CHILD_FAULT of the daemon).
func runBackupChild(ctx context.Context, g *globalOptions) error {
	if g.stdin == nil || g.stdinIsTerminal() {
		return usageErr("backupd internal backup-run is run by the daemon, which sends the request on the standard input")
	}
	// A daemon that died leaves its pipes closed: the backup still ends
	// as on SIGTERM (the daemon's death sends one), its writes to them
	// failing instead of killing the process by SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	// The out-of-memory killer of the cgroup (a pod's) takes a backup
	// before the daemon: raising one's own score needs no privilege.
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte(childOOMScoreAdj), 0)
	g.applyMemoryLimit(0)
	return daemon.ServeChild(ctx, g.stdin, g.stdout, daemon.ChildOptions{
		Logger: func(l slog.Level) *slog.Logger {
			return slog.New(slog.NewJSONHandler(g.stderr, &slog.HandlerOptions{Level: l}))
		},
		RepoOptions: repository.Options{IndexLoaded: g.applyMemoryLimit, ScratchDir: func() string {
			return g.scratchDir(slog.New(slog.NewJSONHandler(g.stderr, nil)))
		}},
	})
}

// isolation is the daemon's Isolation for --isolate-runs: children of this
// very binary (/proc/self/exe, even when the file was replaced since the
// daemon started), reporting their storage operations to storage.
func (g *globalOptions) isolation(cacheRoot string, storage *collectors.Storage) (*daemon.Isolation, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("--isolate-runs: find this executable: %w", err)
	}
	path := "/proc/self/exe"
	if _, err := os.Stat(path); err != nil {
		path = exe
	}
	return &daemon.Isolation{Path: path, Args: []string{exe, "internal", "backup-run"}, CacheRoot: cacheRoot,
		Storage: storage, Fault: g.env.ChildFault}, nil
}
