package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/repository"
)

// ChildOptions configure ServeChild.
type ChildOptions struct {
	// Logger returns the child's logger at the level the daemon logs at
	// (main: slog's JSON handler on the standard error, which the daemon
	// relays into its own log). Nil: no logs.
	Logger func(level slog.Level) *slog.Logger
	// RepoOptions are the repository options before the request's (main:
	// the memory limit set once the index is loaded).
	RepoOptions repository.Options
}

// ServeChild is the child's side of Isolation: it reads the daemon's
// request from in, runs the backup it asks for, and reports on out, ending
// with the result. It returns an error only when it could not report a
// result (a bad request, out closed); the backup's own failure is in the
// result. Cancelling ctx (main cancels it on SIGTERM) stops the backup as
// it stops in the daemon: the packs stored are indexed and the lock is
// released.
func ServeChild(ctx context.Context, in io.Reader, out io.Writer, opt ChildOptions) error {
	var req childRequest
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		return fmt.Errorf("read the backup request on the standard input: %w", err)
	}
	defer clear(req.Password)
	if req.Protocol != childProtocol {
		return fmt.Errorf("backup request of protocol version %d, this binary speaks %d: the daemon's executable was replaced; restart the daemon", req.Protocol, childProtocol)
	}
	log := slog.New(slog.DiscardHandler)
	if opt.Logger != nil {
		log = opt.Logger(req.LogLevel)
	}
	w := &messageWriter{enc: json.NewEncoder(out)}
	tap := &storageTap{}
	res := serveBackup(ctx, req, opt, log, w, tap)
	res.Type = msgResult
	ownUsage(&res)
	res.Storage, res.Retries = tap.drain()
	if err := w.send(res); err != nil {
		return fmt.Errorf("report the backup's result: %w", err)
	}
	return nil
}

// serveBackup opens the repository and backs up, reporting progress; it
// returns the result message (without its type, I/O and storage
// operations).
func serveBackup(ctx context.Context, req childRequest, opt ChildOptions, log *slog.Logger, w *messageWriter, tap *storageTap) childMessage {
	failed := func(err error) childMessage {
		return childMessage{Error: err.Error(), Matches: sentinelsOf(err)}
	}
	faults, err := faultpoint.Parse(req.Fault)
	if err != nil {
		return failed(err)
	}
	spec := req.Repository.spec()
	spec.Faults = faults
	be, err := location.Open(ctx, spec, location.Options{
		Logger:  log.With("repository", req.Repository.Name),
		OnRetry: tap.retried,
		Wrap:    tap.wrap,
	})
	if err != nil {
		return failed(fmt.Errorf("repository %q: %w", req.Repository.Name, err))
	}
	ropt := location.RepositoryOptions(opt.RepoOptions, spec, req.CacheRoot)
	ropt.Logger, ropt.Hostname, ropt.Faults = log, req.Hostname, faults
	if req.SharedLockWait > 0 {
		ropt.SharedLockWait = req.SharedLockWait
	}
	repo, err := repository.Open(ctx, be, req.Password, ropt)
	if err != nil {
		return failed(fmt.Errorf("repository %q: %w", req.Repository.Name, err))
	}
	b := req.Backup
	a, err := archiver.New(repo, archiver.Options{Policy: b.Policy, Hostname: b.Host, Tags: b.Tags,
		Exclude: b.Exclude, OneFileSystem: b.OneFileSystem, AppendOnly: b.AppendOnly,
		FullReadEvery: b.FullReadEvery, FullWalkEvery: b.FullWalkEvery,
		AllowEmptySource: b.AllowEmptySource, MaxShrink: b.MaxShrink, Budget: b.Budget,
		Logger: log, Program: b.Program,
		OnLocked: func(li repository.LockInfo) {
			// Before anything is stored: the daemon removes this lock
			// if the child dies.
			if err := w.send(childMessage{Type: msgLock, LockOwner: li.Owner}); err != nil {
				log.Warn("could not report the lock to the daemon", "err", err)
			}
		}})
	if err != nil {
		return failed(err)
	}
	st := &a.Stats
	counts := func(m *childMessage) {
		m.FilesNew, m.FilesChanged, m.FilesUnchanged, m.FilesSkipped = st.FilesNew.Load(), st.FilesChanged.Load(), st.FilesUnchanged.Load(), st.FilesSkipped.Load()
		m.BytesRead, m.BytesWritten = st.BytesRead.Load(), st.BytesWritten.Load()
	}
	stop := reportChildProgress(req.ProgressInterval, w, tap, counts)
	sn, err := a.Backup(ctx, b.Source)
	stop()
	var res childMessage
	if err != nil {
		res = failed(err)
	} else {
		res.Snapshot, res.FilesUnreadable = sn.ID.String(), st.Errors.Load()
	}
	counts(&res)
	res.SilentChanges = st.SilentChanges.Load()
	return res
}

// reportChildProgress sends a progress message every interval until the
// returned stop, which waits for the last one.
func reportChildProgress(interval time.Duration, w *messageWriter, tap *storageTap, counts func(*childMessage)) (stop func()) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			m := childMessage{Type: msgProgress}
			counts(&m)
			ownUsage(&m)
			m.Storage, m.Retries = tap.drain()
			_ = w.send(m) // a daemon gone: the backup goes on, and its lock is released at its end
		}
	}()
	return func() {
		close(done)
		<-exited
		t.Stop()
	}
}

// ownUsage samples the process: its I/O counters (/proc/self/io, as the
// daemon's in-process meter reads its own) and its peak RSS (VmHWM of
// /proc/self/status). The peak RSS of a child's rusage is no use: Linux
// folds the RSS peak of the address space exec replaces, the daemon's
// (os/exec forks with CLONE_VM), into it.
func ownUsage(m *childMessage) {
	if p, err := process.NewProcess(int32(os.Getpid())); err == nil {
		if c, err := p.IOCounters(); err == nil {
			m.ReadIOBytes, m.WriteIOBytes = c.ReadBytes, c.WriteBytes
		}
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		m.PeakRSS, _ = parseVmHWM(b)
	}
}

// parseVmHWM returns the VmHWM of a /proc/PID/status, in bytes.
func parseVmHWM(status []byte) (uint64, bool) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmHWM:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, false
		}
		kib, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return 0, false
		}
		return kib * 1024, true
	}
	return 0, false
}

// messageWriter writes a child's messages, one JSON object a line, from
// any goroutine.
type messageWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *messageWriter) send(m childMessage) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.enc.Encode(m)
}

// storageTap records a child's backend operations and retries for the
// daemon's storage metrics; it wraps the backend outermost, as the
// daemon's own metering does.
type storageTap struct {
	backend.Backend
	mu      sync.Mutex
	ops     []storageOp
	retries []string
}

var (
	_ backend.Backend   = (*storageTap)(nil)
	_ backend.Unwrapper = (*storageTap)(nil)
)

func (t *storageTap) wrap(be backend.Backend) backend.Backend {
	t.Backend = be
	return t
}

// Unwrap returns the backend, so that backend.As finds its features.
func (t *storageTap) Unwrap() backend.Backend { return t.Backend }

func (t *storageTap) retried(op string, _ int, _ error) {
	t.mu.Lock()
	t.retries = append(t.retries, op)
	t.mu.Unlock()
}

func (t *storageTap) done(op string, start time.Time, err error) {
	result := "ok"
	switch {
	case errors.Is(err, backend.ErrNotFound):
		result = "not_found"
	case err != nil:
		result = "error"
	}
	t.mu.Lock()
	t.ops = append(t.ops, storageOp{Op: op, Result: result, Seconds: time.Since(start).Seconds()})
	t.mu.Unlock()
}

// drain returns the operations and retries recorded since the last drain.
func (t *storageTap) drain() ([]storageOp, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ops, retries := t.ops, t.retries
	t.ops, t.retries = nil, nil
	return ops, retries
}

func (t *storageTap) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	start := time.Now()
	err := t.Backend.Save(ctx, h, rd)
	t.done("save", start, err)
	return err
}

func (t *storageTap) Load(ctx context.Context, h backend.Handle, length int, offset int64, fn func(io.Reader) error) error {
	start := time.Now()
	err := t.Backend.Load(ctx, h, length, offset, fn)
	t.done("load", start, err)
	return err
}

func (t *storageTap) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	start := time.Now()
	fi, err := t.Backend.Stat(ctx, h)
	t.done("stat", start, err)
	return fi, err
}

func (t *storageTap) List(ctx context.Context, ft backend.FileType, fn func(backend.FileInfo) error) error {
	start := time.Now()
	err := t.Backend.List(ctx, ft, fn)
	t.done("list", start, err)
	return err
}

func (t *storageTap) Remove(ctx context.Context, h backend.Handle) error {
	start := time.Now()
	err := t.Backend.Remove(ctx, h)
	t.done("remove", start, err)
	return err
}
