package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/budget"
	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/results"
)

// Isolation runs each backup in a child process of the daemon's own
// executable instead of in the daemon (docs/DESIGN.md §3.6). The child's
// CPU seconds and peak RSS are then its own (from its rusage), whatever
// else runs at the same time, and a crash of the backup (a panic, an
// out-of-memory kill) ends the child, not the daemon: the run is recorded
// as failed with reason crashed and the next one starts as scheduled.
//
// The request, secrets included, goes to the child on its standard input
// as one JSON object; the child reports on its standard output in JSON
// lines (its lock, progress, its storage operations, the result) and logs
// on its standard error in slog's JSON form, which the daemon relays into
// its own log with the run's attributes. Nothing secret is in the child's
// arguments, and its environment is the daemon's own.
type Isolation struct {
	// Path is the executable (main: /proc/self/exe, the daemon's own
	// binary even when the file was replaced since it started) and Args
	// its arguments, Args[0] included (main: the executable's name, then
	// "internal", "backup-run").
	Path string
	Args []string
	// Spec returns where repository r is and how to reach it, with its
	// credentials; nil: location.FromConfig. The node agent sets it (the
	// credentials it read from the cluster).
	Spec func(r config.Repository) (location.Spec, error)
	// CacheRoot is the root of the local caches of object stores'
	// metadata ("" for none; location.RepositoryOptions).
	CacheRoot string
	// Grace is how long a child has to stop after SIGTERM (the daemon
	// stopping) before it is killed: 20s, inside the daemon's own stop
	// grace of 30 s (backupd/cmd_run.go stopGrace), so that the run's
	// record is written before the daemon exits.
	Grace time.Duration
	// Storage, if set, receives the children's backend operations and
	// retries (main: the storage metrics).
	Storage StorageObserver
	// Fault arms a fault point (faultpoint.Parse's spec) in the first
	// backup child of the daemon only, for crash tests: the runs after it
	// must succeed. Main reads it from BACKUPD_CHILD_FAULT.
	Fault string
}

// StorageObserver receives backend operations measured in a backup child:
// op is one of save, load, stat, list, remove; result ok, not_found or
// error. collectors.Storage implements it.
type StorageObserver interface {
	Observe(repository, op, result string, d time.Duration)
	Retried(repository, op string)
}

// childProtocol is the version of the request and of the messages. A
// child refuses a request of another version (a binary replaced by one of
// another version, run through a path that names the new file).
const childProtocol = 1

// childRequest is what a daemon sends its backup child.
type childRequest struct {
	Protocol   int             `json:"protocol"`
	RunID      string          `json:"run_id"`
	Repository childRepository `json:"repository"`
	// Password is the repository's password (base64 in the JSON).
	Password []byte `json:"password"`
	// Hostname is the daemon's: the child's locks carry it.
	Hostname  string `json:"hostname"`
	CacheRoot string `json:"cache_root,omitempty"`
	// SharedLockWait is the daemon's repository.Options.SharedLockWait:
	// the child's backup waits as long for an exclusive lock to go.
	SharedLockWait   time.Duration `json:"shared_lock_wait,omitempty"`
	Backup           childBackup   `json:"backup"`
	ProgressInterval time.Duration `json:"progress_interval"`
	LogLevel         slog.Level    `json:"log_level"`
	Fault            string        `json:"fault,omitempty"`
}

// childRepository is a location.Spec as the request carries it: with the
// credentials, which location.Credentials hides from encoding/json.
type childRepository struct {
	Name     string        `json:"name"`
	Location string        `json:"location"`
	Timeout  time.Duration `json:"timeout,omitempty"`
	RetryFor time.Duration `json:"retry_for,omitempty"`
	Uploads  int           `json:"uploads,omitempty"`
	S3       *childS3      `json:"s3,omitempty"`
}

type childS3 struct {
	Endpoint                 string        `json:"endpoint,omitempty"`
	Region                   string        `json:"region,omitempty"`
	PathStyle                string        `json:"path_style,omitempty"`
	CAFile                   string        `json:"ca_file,omitempty"`
	InsecureSkipVerify       bool          `json:"insecure_skip_verify,omitempty"`
	Profile                  string        `json:"profile,omitempty"`
	AllowUnconditionalWrites bool          `json:"allow_unconditional_writes,omitempty"`
	PartSize                 int64         `json:"part_size,omitempty"`
	StaleUploadAge           time.Duration `json:"stale_upload_age,omitempty"`
	AccessKeyID              string        `json:"access_key_id,omitempty"`
	SecretAccessKey          string        `json:"secret_access_key,omitempty"`
	SessionToken             string        `json:"session_token,omitempty"`
}

func requestRepository(name string, s location.Spec) childRepository {
	r := childRepository{Name: name, Location: s.Location, Timeout: s.Timeout, RetryFor: s.RetryFor, Uploads: s.Uploads}
	if s.S3 != (location.S3{}) {
		c := s.S3
		r.S3 = &childS3{Endpoint: c.Endpoint, Region: c.Region, PathStyle: c.PathStyle, CAFile: c.CAFile,
			InsecureSkipVerify: c.InsecureSkipVerify, Profile: c.Profile, AllowUnconditionalWrites: c.AllowUnconditionalWrites,
			PartSize: c.PartSize, StaleUploadAge: c.StaleUploadAge,
			AccessKeyID: c.Credentials.AccessKeyID, SecretAccessKey: c.Credentials.SecretAccessKey, SessionToken: c.Credentials.SessionToken}
	}
	return r
}

func (r childRepository) spec() location.Spec {
	s := location.Spec{Location: r.Location, Timeout: r.Timeout, RetryFor: r.RetryFor, Uploads: r.Uploads}
	if c := r.S3; c != nil {
		s.S3 = location.S3{Endpoint: c.Endpoint, Region: c.Region, PathStyle: c.PathStyle, CAFile: c.CAFile,
			InsecureSkipVerify: c.InsecureSkipVerify, Profile: c.Profile, AllowUnconditionalWrites: c.AllowUnconditionalWrites,
			PartSize: c.PartSize, StaleUploadAge: c.StaleUploadAge,
			Credentials: location.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}}
	}
	return s
}

// childBackup are the archiver options of the policy's backup.
type childBackup struct {
	Policy           string        `json:"policy"`
	Source           string        `json:"source"`
	Host             string        `json:"host"`
	Tags             []string      `json:"tags,omitempty"`
	Exclude          []string      `json:"exclude,omitempty"`
	OneFileSystem    bool          `json:"one_file_system,omitempty"`
	AppendOnly       []string      `json:"append_only"` // null: the archiver's default
	FullReadEvery    int           `json:"full_read_every,omitempty"`
	FullWalkEvery    int           `json:"full_walk_every,omitempty"`
	AllowEmptySource bool          `json:"allow_empty_source,omitempty"`
	MaxShrink        float64       `json:"max_shrink,omitempty"`
	Budget           budget.Limits `json:"budget,omitempty"`
	Program          string        `json:"program"`
}

// Message types of a child.
const (
	msgLock     = "lock"     // the backup took its lock (LockOwner)
	msgProgress = "progress" // counts so far
	msgResult   = "result"   // the backup ended: the last message
)

// childMessage is one line a child writes on its standard output.
type childMessage struct {
	Type string `json:"type"`
	// LockOwner is the owner (repository.LockInfo.Owner) of the lock the
	// backup holds (lock).
	LockOwner string `json:"lock_owner,omitempty"`

	// Counts so far (progress), or final (result).
	FilesNew       uint64 `json:"files_new,omitempty"`
	FilesChanged   uint64 `json:"files_changed,omitempty"`
	FilesUnchanged uint64 `json:"files_unchanged,omitempty"`
	FilesSkipped   uint64 `json:"files_skipped,omitempty"`
	BytesRead      uint64 `json:"bytes_read,omitempty"`
	BytesWritten   uint64 `json:"bytes_written,omitempty"`
	// ReadIOBytes and WriteIOBytes are the child's I/O so far, from its
	// /proc/self/io; PeakRSS its peak RSS so far (ownUsage).
	ReadIOBytes  uint64 `json:"read_io_bytes,omitempty"`
	WriteIOBytes uint64 `json:"write_io_bytes,omitempty"`
	PeakRSS      uint64 `json:"peak_rss_bytes,omitempty"`
	// Storage and Retries are the backend operations and retries since
	// the previous message (any type).
	Storage []storageOp `json:"storage,omitempty"`
	Retries []string    `json:"retries,omitempty"`

	// Result.
	Snapshot        string `json:"snapshot,omitempty"`
	FilesUnreadable uint64 `json:"files_unreadable,omitempty"`
	SilentChanges   uint64 `json:"silent_changes,omitempty"`
	Error           string `json:"error,omitempty"`
	// Matches names the sentinel errors (childSentinels) Error matched
	// in the child.
	Matches []string `json:"matches,omitempty"`
}

// storageOp is one backend operation of a child.
type storageOp struct {
	Op      string  `json:"op"`
	Result  string  `json:"result"`
	Seconds float64 `json:"s"`
}

// childSentinels are the errors classify, and the backup's own reasons,
// look for, by the name a child reports a match under.
var childSentinels = []struct {
	name string
	err  error
}{
	{"canceled", context.Canceled},
	{"deadline", context.DeadlineExceeded},
	{"corrupt", repository.ErrCorrupt},
	{"locked", repository.ErrLocked},
	{"overlap", archiver.ErrOverlap},
	{"not_exist", fs.ErrNotExist},
	{"permission", fs.ErrPermission},
	{"empty_source", archiver.ErrEmptySource},
	{"source_shrank", archiver.ErrSourceShrank},
}

// childError is a child's error in the daemon: the child's message, and
// the sentinels it matched there, so that errors.Is (and so classify)
// answers as it would have for the error in process.
type childError struct {
	msg     string
	matches []string
}

func (e *childError) Error() string { return e.msg }

func (e *childError) Is(target error) bool {
	for _, s := range childSentinels {
		if s.err == target {
			return slices.Contains(e.matches, s.name)
		}
	}
	return false
}

// sentinelsOf names the sentinels err matches.
func sentinelsOf(err error) []string {
	var out []string
	for _, s := range childSentinels {
		if errors.Is(err, s.err) {
			out = append(out, s.name)
		}
	}
	return out
}

// childRun is the daemon's side of one backup child: what its messages
// and logs said. Its methods are called from the goroutines os/exec copies
// the child's output with, until Wait returns.
type childRun struct {
	d    *Daemon
	log  *slog.Logger
	repo string
	base results.Record

	mu        sync.Mutex
	lockOwner string
	result    *childMessage
	// The child's usage as it last reported it.
	ioRead, ioWrite, peakRSS uint64
	// rawFirst is the first line of output that was not a log record
	// (a panic's message, the Go runtime's fatal error); rawLines counts
	// such lines.
	rawFirst string
	rawLines int
}

// maxRawLines bounds how many lines of a child's unstructured output (a
// panic's goroutine dump) are relayed into the log.
const maxRawLines = 200

// message handles one line of the child's standard output.
func (c *childRun) message(line []byte) {
	var m childMessage
	if err := json.Unmarshal(line, &m); err != nil {
		c.log.Warn("backup child: unreadable message", "err", err)
		return
	}
	c.storage(m.Storage, m.Retries)
	c.mu.Lock()
	if m.Type == msgProgress || m.Type == msgResult {
		c.ioRead, c.ioWrite, c.peakRSS = max(c.ioRead, m.ReadIOBytes), max(c.ioWrite, m.WriteIOBytes), max(c.peakRSS, m.PeakRSS)
	}
	switch m.Type {
	case msgLock:
		c.lockOwner = m.LockOwner
	case msgResult:
		c.result = &m
	}
	c.mu.Unlock()
	if m.Type == msgProgress {
		r := c.base
		r.FilesNew, r.FilesChanged, r.FilesUnchanged, r.FilesSkipped = m.FilesNew, m.FilesChanged, m.FilesUnchanged, m.FilesSkipped
		r.BytesRead, r.BytesWritten = m.BytesRead, m.BytesWritten
		c.d.progress(r)
	}
}

var (
	storageOpNames     = []string{"save", "load", "stat", "list", "remove"}
	storageResultNames = []string{"ok", "not_found", "error"}
)

// storage passes a child's backend operations on; names the metrics do
// not know are dropped.
func (c *childRun) storage(ops []storageOp, retries []string) {
	so := c.d.opt.Isolate.Storage
	if so == nil {
		return
	}
	for _, o := range ops {
		if slices.Contains(storageOpNames, o.Op) && slices.Contains(storageResultNames, o.Result) && o.Seconds >= 0 {
			so.Observe(c.repo, o.Op, o.Result, time.Duration(o.Seconds*float64(time.Second)))
		}
	}
	for _, op := range retries {
		if slices.Contains(storageOpNames, op) {
			so.Retried(c.repo, op)
		}
	}
}

// logLine relays one line of the child's standard error: a log record of
// slog's JSON handler, logged again with the run's attributes, or other
// output (a panic), logged as an error.
func (c *childRun) logLine(line []byte) {
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	if lvl, msg, attrs, ok := parseChildLog(line); ok {
		c.log.LogAttrs(context.Background(), lvl, msg, attrs...)
		return
	}
	c.mu.Lock()
	if c.rawFirst == "" {
		c.rawFirst = string(bytes.TrimSpace(line[:min(len(line), 300)]))
	}
	c.rawLines++
	n := c.rawLines
	c.mu.Unlock()
	switch {
	case n <= maxRawLines:
		c.log.Error("backup child output", "line", string(line))
	case n == maxRawLines+1:
		c.log.Error("backup child output: further lines are not logged")
	}
}

// parseChildLog reads a record of slog's JSON handler, keeping the order
// of its attributes. The time is the relaying logger's; policy, kind and
// run are the daemon's own attributes of the run.
func parseChildLog(line []byte) (lvl slog.Level, msg string, attrs []slog.Attr, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, "", nil, false
	}
	for dec.More() {
		t, err := dec.Token()
		key, isKey := t.(string)
		if err != nil || !isKey {
			return 0, "", nil, false
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return 0, "", nil, false
		}
		switch key {
		case slog.TimeKey, "policy", "kind", "run":
		case slog.LevelKey:
			s, _ := v.(string)
			if err := lvl.UnmarshalText([]byte(s)); err != nil {
				lvl = slog.LevelInfo
			}
		case slog.MessageKey:
			msg, _ = v.(string)
		default:
			attrs = append(attrs, slog.Any(key, v))
		}
	}
	return lvl, msg, attrs, true
}

// lineWriter calls line for every line written to it (without its line
// end); a line longer than max is cut there, the rest dropped.
type lineWriter struct {
	line func([]byte)
	max  int
	buf  []byte
	skip bool // dropping the rest of a line over max
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if !w.skip {
				w.buf = append(w.buf, p...)
				if len(w.buf) > w.max {
					w.line(w.buf[:w.max])
					w.buf, w.skip = w.buf[:0], true
				}
			}
			break
		}
		if !w.skip {
			w.buf = append(w.buf, p[:i]...)
			w.line(w.buf[:min(len(w.buf), w.max)])
		}
		w.buf, w.skip = w.buf[:0], false
		p = p[i+1:]
	}
	return n, nil
}

// flush hands on an unterminated last line.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 && !w.skip {
		w.line(w.buf)
	}
	w.buf = w.buf[:0]
}

// childRequest builds the request of a backup of p.
func (d *Daemon) childRequest(h *repoHandle, p config.Policy, host, runID string) (childRequest, error) {
	iso := d.opt.Isolate
	specOf := iso.Spec
	if specOf == nil {
		specOf = location.FromConfig
	}
	spec, err := specOf(h.cfg)
	if err != nil {
		return childRequest{}, err
	}
	pw, err := d.password(h.cfg)
	if err != nil {
		return childRequest{}, err
	}
	req := childRequest{Protocol: childProtocol, RunID: runID, Repository: requestRepository(h.cfg.Name, spec), Password: pw,
		Hostname: d.opt.Hostname, CacheRoot: iso.CacheRoot, SharedLockWait: d.opt.RepoOptions.SharedLockWait, ProgressInterval: d.opt.ProgressInterval, LogLevel: minLevel(d.log.Handler()),
		Backup: childBackup{Policy: p.Name, Source: p.Source, Host: host, Tags: p.Tags, Exclude: p.Exclude, OneFileSystem: p.OneFileSystem,
			AppendOnly: p.AppendOnly, FullReadEvery: p.FullReadEvery, FullWalkEvery: p.FullWalkEvery,
			AllowEmptySource: p.AllowEmptySource, MaxShrink: p.MaxShrink, Budget: p.Budget, Program: "backupd daemon"}}
	if iso.Fault != "" && d.childFault.CompareAndSwap(false, true) {
		req.Fault = iso.Fault
	}
	return req, nil
}

// minLevel is the lowest level h logs.
func minLevel(h slog.Handler) slog.Level {
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if h.Enabled(context.Background(), l) {
			return l
		}
	}
	return slog.LevelError
}

// backupInChild runs the backup of p in a child process (Options.Isolate)
// and fills rec from its reports; the usage is the child's own. A child
// that ends without a result (killed by a signal, a panic) fails the run
// with reason crashed, or interrupted when the daemon is stopping; its lock
// is removed, since it is known to be dead, and its packs are left for the
// next backup to adopt.
func (d *Daemon) backupInChild(ctx context.Context, h *repoHandle, p config.Policy, host string, rec *results.Record) (usage, error) {
	iso := d.opt.Isolate
	req, err := d.childRequest(h, p, host, rec.RunID)
	if err != nil {
		return usage{}, err
	}
	body, err := json.Marshal(req)
	clear(req.Password)
	if err != nil {
		return usage{}, fmt.Errorf("backup child request: %w", err)
	}
	defer clear(body)
	log := d.log.With("policy", rec.Policy, "kind", rec.Kind, "run", rec.RunID)
	// The child's records keep their own component (archiver, ...).
	relay := d.opt.Logger.With("policy", rec.Policy, "kind", rec.Kind, "run", rec.RunID)
	c := &childRun{d: d, log: relay, repo: h.cfg.Name, base: *rec}
	stdout := &lineWriter{line: c.message, max: 64 << 20}
	stderr := &lineWriter{line: c.logLine, max: 64 << 10}
	cmd := exec.CommandContext(ctx, iso.Path)
	cmd.Args = iso.Args
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(body), stdout, stderr
	// A child whose daemon dies stops as it would on the daemon's SIGTERM
	// (its run is closed as interrupted at the daemon's next start).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = iso.Grace
	if err := cmd.Start(); err != nil {
		if ctx.Err() == nil {
			rec.Reason = results.ReasonOther
		}
		return usage{}, fmt.Errorf("start the backup child process: %w", err)
	}
	pid := cmd.Process.Pid
	log.Debug("backup child started", "pid", pid)
	waitErr := cmd.Wait()
	stdout.flush()
	stderr.flush()
	u := childUsage(cmd.ProcessState)
	c.mu.Lock()
	res, owner, raw := c.result, c.lockOwner, c.rawFirst
	u.ReadIOBytes, u.WriteIOBytes, u.MaxRSS = c.ioRead, c.ioWrite, c.peakRSS
	c.mu.Unlock()
	if res == nil {
		d.removeChildLock(context.WithoutCancel(ctx), h, owner, log)
		how := "ended"
		switch {
		case cmd.ProcessState != nil:
			how = exitDescription(cmd.ProcessState)
		case waitErr != nil:
			how = "ended (" + waitErr.Error() + ")"
		}
		msg := fmt.Sprintf("backup child process %d %s before it reported a result", pid, how)
		if raw != "" {
			msg += ": " + raw
		}
		if ctx.Err() == nil {
			rec.Reason = results.ReasonCrashed
		}
		return u, errors.New(msg)
	}
	rec.FilesNew, rec.FilesChanged, rec.FilesUnchanged, rec.FilesSkipped = res.FilesNew, res.FilesChanged, res.FilesUnchanged, res.FilesSkipped
	rec.BytesRead, rec.BytesWritten = res.BytesRead, res.BytesWritten
	rec.SilentChanges = res.SilentChanges
	if res.Error != "" {
		return u, backupFailed(rec, &childError{msg: res.Error, matches: res.Matches})
	}
	backupDone(rec, res.Snapshot, res.FilesUnreadable)
	return u, nil
}

// removeChildLock removes the lock of a backup child known to be dead
// (reaped), and leaves a hint that it may have stored packs no index lists,
// which the next backup then adopts. Without this, the next backup would
// find the lock stale by its holder's PID being gone, unless the PID was
// reused meanwhile; then the lock would block the policy's backups
// (ErrOverlap) for a lease.
func (d *Daemon) removeChildLock(ctx context.Context, h *repoHandle, owner string, log *slog.Logger) {
	if owner == "" {
		return // the child died before it held a lock, or before it said so (then its lock is stale by its PID)
	}
	removed, err := h.repo.RemoveLocksOf(ctx, owner)
	if err != nil {
		log.Warn("could not remove the dead backup child's lock; it goes stale when its lease runs out", "err", err)
		return
	}
	if len(removed) == 0 {
		return
	}
	if err := h.repo.MarkOrphans(ctx); err != nil {
		log.Warn("could not leave the hint that the dead backup child may have stored unindexed packs; prune removes them after its grace", "err", err)
		return
	}
	log.Info("removed the dead backup child's lock; the next backup adopts the packs it stored", "locks", len(removed))
}

// childUsage is a child's CPU time, from its rusage. Its peak RSS is the
// child's own report (ownUsage): the rusage's includes the daemon's.
func childUsage(ps *os.ProcessState) usage {
	if ps == nil {
		return usage{}
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return usage{}
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return usage{CPUSeconds: tv(ru.Utime) + tv(ru.Stime)}
}

// exitDescription says how a child ended: the signal that killed it, by
// name, or its exit status.
func exitDescription(ps *os.ProcessState) string {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		return "ended (" + ps.String() + ")"
	case ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		return "was killed by signal SIGKILL (out of memory, or killed by hand)"
	case ws.Signaled():
		core := ""
		if ws.CoreDump() {
			core = ", core dumped"
		}
		return fmt.Sprintf("was killed by signal %s (%s%s)", unix.SignalName(ws.Signal()), ws.Signal(), core)
	}
	return fmt.Sprintf("exited with status %d", ws.ExitStatus())
}
