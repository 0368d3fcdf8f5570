package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshbackup/backupd/bench/faults"
)

// procResult is one tool process of the fault benchmark: what it cost,
// how it ended and what it printed.
type procResult struct {
	Usage faults.Usage
	// ExitCode is the exit status, -1 when the process was killed by a
	// signal.
	ExitCode int
	// Killed is true when the bench's SIGKILL ended the process (it was
	// still running when the kill came).
	Killed bool
	// TimedOut is true when the process ran past its time limit and was
	// killed for it (it is then Failed, not Killed).
	TimedOut bool
	// Failed holds "exit status N: last lines of output" for a run that
	// neither succeeded nor was killed by the bench; "" otherwise. A
	// warning exit (borg's 1) is not a failure.
	Failed  string
	Warning string
	Stdout  string
	Stderr  string
}

// ok reports whether the run succeeded (possibly with warnings).
func (p *procResult) ok() bool { return p != nil && !p.Killed && p.Failed == "" }

// output is stdout and stderr together, for tools that print results on
// either.
func (p *procResult) output() string { return p.Stdout + "\n" + p.Stderr }

// stopGrace is how long a tool asked to stop (SIGINT: the bench
// cancelled, or a hung run's bound reached) has to exit before SIGKILL.
// Every tool here that exits on SIGINT does so within a second; restic
// on a read-only repository retries its lock removal until killed.
const stopGrace = 3 * time.Second

// runProc runs inv as a child process in its own process group. With
// killAfter > 0 the whole group gets SIGKILL that long after the start,
// if it is still running. Usage comes from the child's rusage (CPU, peak
// RSS) and from /proc/PID/io read while the exited child is not yet reaped
// (rchar and wchar: the bytes its read and write system calls moved,
// whatever the page cache held; its reaped children included). A run that
// fails is reported in the result; the error is for a process that could
// not be started or a cancelled context. With limit > 0 a process still
// running after limit is killed and reported as failed (TimedOut): a tool
// that retries a damaged object for many minutes would hold up the bench.
// A cancelled context asks the group to stop (SIGINT) and kills it
// stopGrace later.
func runProc(ctx context.Context, inv invocation, killAfter, limit time.Duration) (*procResult, error) {
	cmd := exec.Command(inv.bin, inv.args...)
	cmd.Dir = inv.dir
	cmd.Env = inv.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout := &tailBuffer{limit: outputLimit}
	stderr := &tailBuffer{limit: outputLimit}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", inv.bin, err)
	}
	pid := cmd.Process.Pid
	res := &procResult{}
	exited := make(chan struct{})
	var killSent atomic.Bool
	var killTimer *time.Timer
	if killAfter > 0 {
		killTimer = time.AfterFunc(killAfter, func() {
			killSent.Store(true)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		})
	}
	var timedOut atomic.Bool
	if limit > 0 {
		t := time.AfterFunc(limit, func() {
			timedOut.Store(true)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		})
		defer t.Stop()
	}
	// Cancellation: ask the group to stop, then kill it.
	go func() {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(-pid, syscall.SIGINT)
			select {
			case <-exited:
			case <-time.After(stopGrace):
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		case <-exited:
		}
	}()
	// Wait for the exit without reaping, so /proc/PID/io is still there.
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	wall := time.Since(start)
	rchar, wchar, ioErr := procIO(pid)
	if killTimer != nil {
		killTimer.Stop()
	}
	// Anything the group left running (a helper process holding the
	// output pipes) goes too; the leader is not reaped yet, so the group
	// ID is still its own.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	werr := cmd.Wait()
	close(exited)
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	res.Usage.WallSeconds = wall.Seconds()
	if ps := cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			res.Usage.CPUSeconds = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
			res.Usage.PeakRSSBytes = ru.Maxrss << 10 // KiB on Linux
			if ioErr != nil {
				// No /proc: the blocks the kernel counted, 512 bytes each.
				rchar, wchar = ru.Inblock*512, ru.Oublock*512
			}
		}
		res.ExitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			res.TimedOut = timedOut.Load()
			res.Killed = killSent.Load() && !res.TimedOut
		}
	}
	res.Usage.ReadBytes, res.Usage.WrittenBytes = rchar, wchar
	if ctx.Err() != nil {
		return res, fmt.Errorf("%s: %w", inv.bin, ctx.Err())
	}
	var ee *exec.ExitError
	switch {
	case res.TimedOut:
		res.Failed = fmt.Sprintf("killed after running for %v (the bench's limit): %s", limit, lastLines(res.Stderr+"\n"+res.Stdout, 5))
	case werr == nil, res.Killed:
	case errors.As(werr, &ee) && inv.warnExit != 0 && res.ExitCode == inv.warnExit:
		res.Warning = fmt.Sprintf("exit status %d (warnings): %s", res.ExitCode, lastLines(res.Stderr, 5))
	case errors.As(werr, &ee):
		res.Failed = fmt.Sprintf("exit status %d: %s", res.ExitCode, lastLines(res.Stderr+"\n"+res.Stdout, 10))
	default:
		res.Failed = werr.Error()
	}
	return res, nil
}

// procIO reads rchar and wchar of a process from /proc/PID/io.
func procIO(pid int) (rchar, wchar int64, err error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	found := 0
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, perr := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if perr != nil {
			continue
		}
		switch k {
		case "rchar":
			rchar, found = n, found+1
		case "wchar":
			wchar, found = n, found+1
		}
	}
	if found < 2 {
		return 0, 0, fmt.Errorf("/proc/%d/io: no rchar and wchar", pid)
	}
	return rchar, wchar, sc.Err()
}

// addUsage sums usages of runs that make up one phase: times and bytes
// add up, the peak RSS is the highest.
func addUsage(a, b faults.Usage) faults.Usage {
	return faults.Usage{
		WallSeconds:  a.WallSeconds + b.WallSeconds,
		CPUSeconds:   a.CPUSeconds + b.CPUSeconds,
		PeakRSSBytes: max(a.PeakRSSBytes, b.PeakRSSBytes),
		ReadBytes:    a.ReadBytes + b.ReadBytes,
		WrittenBytes: a.WrittenBytes + b.WrittenBytes,
	}
}
