package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/backupd/tempdir"
)

// environment is what backupd reads from its environment, read once by main.
type environment struct {
	Repository   string // BACKUPD_REPOSITORY
	Password     string // BACKUPD_PASSWORD
	PasswordFile string // BACKUPD_PASSWORD_FILE
	Fault        string // BACKUPD_FAULT: fault points to arm (tests)
	GoMemLimit   bool   // GOMEMLIMIT is set: leave the memory limit alone
	// ChildFault is BACKUPD_CHILD_FAULT (tests, not in the help): a fault
	// point a daemon with --isolate-runs arms in its first backup child
	// only (daemon.Isolation.Fault), not in itself.
	ChildFault string

	// Object storage settings AWS has no variable for (raw values,
	// checked when a command opens a repository).
	S3PathStyle    string // BACKUPD_S3_PATH_STYLE
	S3CAFile       string // BACKUPD_S3_CA_FILE
	StorageTimeout string // BACKUPD_STORAGE_TIMEOUT
	// StorageRetryFor is BACKUPD_STORAGE_RETRY_FOR.
	StorageRetryFor string
	Uploads         string // BACKUPD_UPLOADS
	// For tests only, not in the help: BACKUPD_S3_PART_SIZE (bytes, at
	// least 5 MiB) makes packs above it multipart uploads, and
	// BACKUPD_S3_STALE_UPLOAD_AGE (a duration) is how old an unfinished
	// multipart upload must be for prune to abort it (1 hour by default).
	S3PartSize       string
	S3StaleUploadAge string
	// CacheDir is BACKUPD_CACHE_DIR; CacheRoot is the default cache
	// root, ${XDG_CACHE_HOME:-~/.cache}/backupd/repos ("" when neither
	// is known: no cache).
	CacheDir  string
	CacheRoot string
	// AWSEndpointURL and AWSEndpointURLS3 (AWS_ENDPOINT_URL,
	// AWS_ENDPOINT_URL_S3) are read by the AWS SDK itself; backupd reads
	// them only to refuse one without a scheme with a clear error.
	AWSEndpointURL   string
	AWSEndpointURLS3 string
	// CgroupMemory is the memory limit of the process's cgroup (a
	// container's), 0 when there is none or it cannot be read.
	CgroupMemory uint64
}

// streams are the process's standard streams. in may be nil (no terminal).
type streams struct {
	in       *os.File
	out, err io.Writer
}

// globalOptions are the flags every command shares, and the environment.
type globalOptions struct {
	repo         string
	passwordFile string
	json         bool
	quiet        bool
	logFormat    string
	logLevel     string

	// Object storage flags (see storageFlags).
	s3PathStyle          string
	s3CAFile             string
	s3InsecureSkipVerify bool
	storageTimeout       time.Duration
	storageRetryFor      time.Duration
	uploads              int
	// The local cache (see cacheOpener).
	cacheDir string
	noCache  bool
	// flags are the persistent flags, to tell a flag given from its
	// default taken from the environment.
	flags *pflag.FlagSet

	// scratch is the process's temp directory (scratchDir); the daemon
	// opens repositories from several goroutines.
	scratchMu sync.Mutex
	scratch   *tempdir.Dir

	// memoryExtra is what the command holds besides the index, added to
	// the soft memory limit (applyMemoryLimit): a restore's read-ahead.
	memoryExtra int64

	env    environment
	stdin  *os.File
	stdout io.Writer
	stderr io.Writer

	// hooks are set by in-process tests only, never by a flag, a variable
	// or the config.
	hooks testHooks
}

// testHooks let an in-process test reach into what a command opens.
type testHooks struct {
	// s3Transport decorates an s3:// repository's HTTP transport (fault
	// injection).
	s3Transport func(http.RoundTripper) http.RoundTripper
	// onRetry is told of each retry of an object store's operation.
	onRetry func(op string, attempt int, err error)
	// packSize, if not 0, is the repository's PackSize.
	packSize int64
}

func usageErr(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

const exitCodesHelp = `Exit codes:
  0  success
  1  failure (the error is printed)
  2  bad usage: unknown command or flag, missing or extra argument, bad value (nothing was touched)
  3  corruption found (check), an unreadable snapshot named (snapshots, restore), files
     not restored because their data is damaged or missing (restore), or a damaged
     index file (run 'backupd repair index')
  4  backup skipped: a backup of the same policy and source is already running on this host
  5  backup incomplete: the snapshot was saved without files that could not be read

Environment:
  BACKUPD_REPOSITORY       repository directory or s3://BUCKET[/PREFIX] (instead of --repo)
  BACKUPD_PASSWORD         repository password
  BACKUPD_PASSWORD_FILE    file holding the password (instead of --password-file)
  BACKUPD_S3_PATH_STYLE    instead of --s3-path-style
  BACKUPD_S3_CA_FILE       instead of --s3-ca-file
  BACKUPD_STORAGE_TIMEOUT  instead of --storage-timeout
  BACKUPD_STORAGE_RETRY_FOR instead of --storage-retry-for
  BACKUPD_UPLOADS          instead of --uploads
  BACKUPD_CACHE_DIR        instead of --cache-dir
  AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  AWS_SESSION_TOKEN, AWS_PROFILE and the other AWS SDK settings (shared
  config and credentials files, web identity, container credentials) say
  where an s3:// repository is and who may use it.
`

func newRootCommand(env environment, std streams) (*cobra.Command, *globalOptions) {
	g := &globalOptions{env: env, stdin: std.in, stdout: std.out, stderr: std.err}
	root := &cobra.Command{
		Use:   "backupd",
		Short: "Back up service-mesh volumes and prove them restorable",
		Long: `backupd backs up directories into an encrypted, deduplicating, crash-safe
repository (FastCDC chunks, zstd, AES-256-GCM), restores them byte-exact,
and verifies every blob by reading it back.

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(std.out)
	root.SetErr(std.err)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErr("%v (see '%s --help')", err, c.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVarP(&g.repo, "repo", "r", env.Repository, "repository: a directory or s3://BUCKET[/PREFIX] (env BACKUPD_REPOSITORY)")
	pf.StringVar(&g.passwordFile, "password-file", env.PasswordFile, "read the repository password from this file (env BACKUPD_PASSWORD_FILE; or set BACKUPD_PASSWORD)")
	pf.BoolVar(&g.json, "json", false, "print results as JSON for machines")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print no progress")
	pf.StringVar(&g.logFormat, "log.format", "text", "log format: text or json")
	pf.StringVar(&g.logLevel, "log.level", "info", "log level: debug, info, warn or error")
	g.storageFlags(pf)

	unknownSubcommand(root)
	root.AddCommand(newInitCommand(g), newBackupCommand(g), newSnapshotsCommand(g), newRestoreCommand(g),
		newCheckCommand(g), newForgetCommand(g), newPruneCommand(g), newRunCommand(g), newConfigCommand(g),
		newRepairCommand(g), newUnlockCommand(g), newKeyCommand(g), newAgentCommand(g), newInternalCommand(g))
	return root, g
}

func (g *globalOptions) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usageErr("--log.level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
	}
	return nil, usageErr("--log.format %q: want text or json", g.logFormat)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress reports whether to draw progress on the terminal.
func (g *globalOptions) progress() bool {
	return !g.quiet && !g.json && isTerminal(g.stderr)
}

// password returns the repository password: from --password-file, else
// BACKUPD_PASSWORD, else asked on the terminal (twice when confirm).
func (g *globalOptions) password(confirm bool) ([]byte, error) {
	if g.passwordFile != "" {
		return readPasswordFile(g.passwordFile)
	}
	if g.env.Password != "" {
		return []byte(g.env.Password), nil
	}
	if !g.stdinIsTerminal() {
		return nil, usageErr("no password: set BACKUPD_PASSWORD or BACKUPD_PASSWORD_FILE, or pass --password-file")
	}
	return g.askPassword("repository password: ", confirm)
}

// readPasswordFile reads a password from a file (without its line end).
// Errors name the file, never its content.
func readPasswordFile(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read password file: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("password file %s is empty", name)
	}
	return b, nil
}

func (g *globalOptions) stdinIsTerminal() bool {
	return g.stdin != nil && term.IsTerminal(int(g.stdin.Fd()))
}

// askPassword reads a password on the terminal, without echo (twice when
// confirm).
func (g *globalOptions) askPassword(prompt string, confirm bool) ([]byte, error) {
	read := func(prompt string) ([]byte, error) {
		fmt.Fprint(g.stderr, prompt)
		p, err := term.ReadPassword(int(g.stdin.Fd()))
		fmt.Fprintln(g.stderr)
		return p, err
	}
	p, err := read(prompt)
	if err != nil {
		return nil, err
	}
	if confirm {
		q, err := read("enter it again: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, q) {
			return nil, errors.New("the passwords do not match")
		}
	}
	if len(p) == 0 {
		return nil, errors.New("empty password")
	}
	return p, nil
}

func (g *globalOptions) repoOptions(log *slog.Logger) (repository.Options, error) {
	faults, err := faultpoint.Parse(g.env.Fault)
	if err != nil {
		return repository.Options{}, usageErr("%v", err)
	}
	return repository.Options{Logger: log, Faults: faults, IndexLoaded: g.applyMemoryLimit, PackSize: g.hooks.packSize,
		ScratchDir: func() string { return g.scratchDir(log) }}, nil
}

// scratchDir is the process's own temp directory, in $TMPDIR (or /tmp),
// acquired on first use (the first repository without a temp directory of
// its own) and removed when the command ends (releaseScratch);
// acquiring it removes those of backupd processes that died. When it
// cannot be made, it is "" (packs for object storage then go to the temp
// directory itself) and log says why: a repository in a directory, which
// has its own, needs none.
func (g *globalOptions) scratchDir(log *slog.Logger) string {
	g.scratchMu.Lock()
	defer g.scratchMu.Unlock()
	if g.scratch == nil {
		d, err := tempdir.Acquire(os.TempDir(), "backupd-tmp-")
		if err != nil {
			log.Warn("no temp directory of its own: packs on their way to object storage go to the temp directory, where a crash leaves them", "err", err)
			return ""
		}
		g.scratch = d
	}
	return g.scratch.Path()
}

// releaseScratch removes the directory scratchDir acquired, if any.
func (g *globalOptions) releaseScratch() error {
	g.scratchMu.Lock()
	defer g.scratchMu.Unlock()
	return g.scratch.Release()
}

// openBackend opens (or, with create, creates) the backend of spec for a
// repository of options opt: its fault points, and the tests' hooks.
func (g *globalOptions) openBackend(ctx context.Context, spec location.Spec, opt repository.Options, create bool) (backend.Backend, error) {
	spec.Faults, spec.Transport = opt.Faults, g.hooks.s3Transport
	lo := location.Options{Logger: opt.Logger, OnRetry: g.hooks.onRetry}
	if create {
		return location.Create(ctx, spec, lo)
	}
	return location.Open(ctx, spec, lo)
}

// Memory budget (README "Memory"): the data pipeline's buffers fit in
// memoryBase whatever the data size; the index needs about indexBytesPerBlob
// per blob. In a container whose cgroup limit is smaller, cgroupShare of
// that limit is used instead, leaving room for memory the Go runtime does
// not count (the binary, stacks, the kernel's page tables). The limit is
// soft (the Go runtime's GC target), so going over it costs CPU, never a
// failure. GOMEMLIMIT overrides it.
const (
	memoryBase        = 48 << 20
	indexBytesPerBlob = 256
	cgroupShare       = 0.9
)

// memoryLimit is the soft memory limit for an index of blobs blobs under a
// cgroup limit of cgroup bytes (0: none), for a command that holds extra
// bytes besides (a restore's read-ahead and chunk buffers).
func memoryLimit(blobs int, extra int64, cgroup uint64) int64 {
	limit := int64(memoryBase) + int64(blobs)*indexBytesPerBlob + max(extra, 0)
	if cgroup > 0 {
		limit = min(limit, int64(float64(cgroup)*cgroupShare))
	}
	return limit
}

func (g *globalOptions) applyMemoryLimit(blobs int) {
	if g.env.GoMemLimit {
		return
	}
	debug.SetMemoryLimit(memoryLimit(blobs, g.memoryExtra, g.env.CgroupMemory))
}

// requireRepo returns the usage error for a missing --repo.
func (g *globalOptions) requireRepo() error {
	if g.repo == "" {
		return usageErr("no repository: pass --repo DIR or --repo s3://BUCKET[/PREFIX], or set BACKUPD_REPOSITORY")
	}
	return nil
}

// open opens the repository named by --repo.
func (g *globalOptions) open(ctx context.Context) (*repository.Repo, *slog.Logger, error) {
	return g.openWith(ctx, nil)
}

// openWith is open, calling beforeKey (if not nil) once the password is in
// hand, just before the key is derived from it.
func (g *globalOptions) openWith(ctx context.Context, beforeKey func()) (*repository.Repo, *slog.Logger, error) {
	log, err := g.logger()
	if err != nil {
		return nil, nil, err
	}
	if err := g.requireRepo(); err != nil {
		return nil, nil, err
	}
	g.applyMemoryLimit(0)
	pw, err := g.password(false)
	if err != nil {
		return nil, nil, err
	}
	opt, err := g.repoOptions(log)
	if err != nil {
		return nil, nil, err
	}
	spec, err := g.spec()
	if err != nil {
		return nil, nil, err
	}
	opt = location.RepositoryOptions(opt, spec, g.cacheRoot())
	be, err := g.openBackend(ctx, spec, opt, false)
	if err != nil {
		return nil, nil, err
	}
	if beforeKey != nil {
		beforeKey()
	}
	r, err := repository.Open(ctx, be, pw, opt)
	if err != nil {
		return nil, nil, err
	}
	return r, log, nil
}

// cacheRoot returns the directory holding the local caches of
// repositories on object storage, one per repository id: --cache-dir
// (BACKUPD_CACHE_DIR), else ${XDG_CACHE_HOME:-~/.cache}/backupd/repos; ""
// with --no-cache.
func (g *globalOptions) cacheRoot() string {
	switch {
	case g.noCache:
		return ""
	case g.cacheDir != "":
		return g.cacheDir
	}
	return g.env.CacheRoot
}

// openExclusive opens the repository and takes its exclusive lock for
// command; the caller unlocks it and works under lock.Context().
func (g *globalOptions) openExclusive(ctx context.Context, command string) (*repository.Repo, *slog.Logger, *repository.Lock, error) {
	r, log, err := g.open(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	lock, err := r.Lock(ctx, repository.LockOptions{Exclusive: true, Command: command})
	if err != nil {
		return nil, nil, nil, err
	}
	return r, log, lock, nil
}

func (g *globalOptions) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// countProgress returns, on a terminal, a progress callback drawing format
// (with done and total) over the status line, and a function that clears
// the line; elsewhere a nil callback (no progress) and a no-op.
func (g *globalOptions) countProgress(format string) (progress func(done, total int), clearLine func()) {
	if !g.progress() {
		return nil, func() {}
	}
	return func(done, total int) { fmt.Fprintf(g.stderr, "\r\033[K"+format, done, total) },
		func() { fmt.Fprint(g.stderr, "\r\033[K") }
}

// showProgress redraws a status line on a terminal every half second.
func (g *globalOptions) showProgress(status func() string) (stop func()) {
	if !g.progress() {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(g.stderr, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprintf(g.stderr, "\r\033[K[%s] %s", time.Since(start).Truncate(time.Second), status())
			}
		}
	}()
	return func() { close(done); <-finished }
}

// noArgs and exactArgs check a command's arguments; a wrong count is bad
// usage (exit 2), like a bad flag.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErr("%s takes no arguments, got %s (see '%s --help')", cmd.CommandPath(), escape(strings.Join(args, " ")), cmd.CommandPath())
	}
	return nil
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErr("%s takes %s, got %d arguments (see '%s --help')", cmd.CommandPath(), what, len(args), cmd.CommandPath())
		}
		return nil
	}
}

// unknownSubcommand makes a command that only groups others refuse an
// unknown subcommand as bad usage, and print its help when given none.
func unknownSubcommand(cmd *cobra.Command) {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		return usageErr("unknown command %q for %q (see '%s --help')", args[0], cmd.CommandPath(), cmd.CommandPath())
	}
}

// nonNegative refuses a negative duration flag.
func nonNegative(flag string, d time.Duration) error {
	if d < 0 {
		return usageErr("--%s %s: want a duration of zero or more", flag, d)
	}
	return nil
}

// escape makes a name safe to print on a terminal: a string with control
// characters or invalid UTF-8 is printed quoted, with Go escapes.
func escape(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(s)
		}
	}
	return s
}

// nonNil returns s, or an empty slice for nil, so that JSON prints [] and
// never null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// checkHostAndTags refuses a --host or --tag a snapshot cannot carry (the
// config's rules).
func checkHostAndTags(host string, tags []string) error {
	if host != "" && !config.ValidHost(host) {
		return usageErr("--host %s: want letters, digits, '_', '.', '-' (max 253)", escape(host))
	}
	for _, t := range tags {
		if !config.ValidTag(t) {
			return usageErr("--tag %s: want letters, digits, '_', '.', '-' (max 63)", escape(t))
		}
	}
	return nil
}

// snapshotFilter selects snapshots by --policy, --host and --tag (every tag
// given must be on the snapshot); empty fields select all.
type snapshotFilter struct {
	Policy string
	Host   string
	Tags   []string
}

func (f snapshotFilter) match(s *snapshot.Snapshot) bool {
	if f.Policy != "" && s.Policy != f.Policy || f.Host != "" && s.Hostname != f.Host {
		return false
	}
	for _, t := range f.Tags {
		if !slices.Contains(s.Tags, t) {
			return false
		}
	}
	return true
}

func (f *snapshotFilter) flags(fs *pflag.FlagSet, what string) {
	fs.StringVarP(&f.Policy, "policy", "p", "", what+" of this policy")
	fs.StringVar(&f.Host, "host", "", what+" of this host")
	fs.StringSliceVar(&f.Tags, "tag", nil, what+" with this tag (repeat: all of them)")
}
