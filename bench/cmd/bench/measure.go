package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Measurement is one child process: its resource usage and outcome.
type Measurement struct {
	Command   []string        `json:"command"`
	WallSec   float64         `json:"wall_seconds"`
	UserSec   float64         `json:"user_seconds"`
	SysSec    float64         `json:"sys_seconds"`
	CPUSec    float64         `json:"cpu_seconds"`
	MaxRSSKiB int64           `json:"max_rss_kib"`
	ExitCode  int             `json:"exit_code"`
	Warning   string          `json:"warning,omitempty"`
	Error     string          `json:"error,omitempty"`
	Summary   json.RawMessage `json:"summary,omitempty"` // last stdout line, when it is JSON
	// S3 is the run's traffic through the counting proxy (S3 mode).
	S3 *Traffic `json:"s3_traffic,omitempty"`
}

// redact removes secrets from everything of m that is printed or saved.
func (m *Measurement) redact(secrets []string) {
	if len(secrets) == 0 {
		return
	}
	for i, a := range m.Command {
		m.Command[i] = redact(a, secrets)
	}
	m.Error, m.Warning = redact(m.Error, secrets), redact(m.Warning, secrets)
	if m.Summary != nil {
		if s := redact(string(m.Summary), secrets); s != string(m.Summary) {
			m.Summary = nil // no longer sure to be valid JSON
		}
	}
}

// OK reports whether the run succeeded.
func (m *Measurement) OK() bool { return m != nil && m.Error == "" }

// invocation is a command to run for a tool.
type invocation struct {
	bin  string
	args []string
	dir  string   // working directory; "" inherits the bench's
	env  []string // full environment
	// warnExit is an exit status that means "completed with warnings"
	// (borg's 1); 0 if the tool has none.
	warnExit int
}

// outputLimit bounds how much of a child's stdout and stderr is kept.
const outputLimit = 1 << 20

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	buf   []byte
	limit int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	// Trim only past twice the limit, so trimming stays amortised O(1).
	if len(t.buf) > 2*t.limit {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.limit:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf[max(0, len(t.buf)-t.limit):]) }

// measure runs inv as a child process and returns its measurement and
// stdout. A failed run is reported in Measurement.Error, not as an error;
// the error result is for a cancelled context only.
func measure(ctx context.Context, inv invocation) (*Measurement, string, error) {
	m := &Measurement{Command: append([]string{inv.bin}, inv.args...)}
	cmd := exec.CommandContext(ctx, inv.bin, inv.args...)
	cmd.Dir = inv.dir
	cmd.Env = inv.env
	// On cancellation ask the child to stop cleanly, then kill it.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 15 * time.Second
	stdout := &tailBuffer{limit: outputLimit}
	stderr := &tailBuffer{limit: outputLimit}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	start := time.Now()
	err := cmd.Run()
	m.WallSec = time.Since(start).Seconds()
	if ps := cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			m.UserSec = tvSeconds(ru.Utime)
			m.SysSec = tvSeconds(ru.Stime)
			m.CPUSec = m.UserSec + m.SysSec
			m.MaxRSSKiB = ru.Maxrss // KiB on Linux
		}
		m.ExitCode = ps.ExitCode()
	}
	if ctx.Err() != nil {
		return m, stdout.String(), fmt.Errorf("%s: %w", inv.bin, ctx.Err())
	}
	m.Summary = jsonSummary(stdout.String())
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && inv.warnExit != 0 && m.ExitCode == inv.warnExit:
		m.Warning = fmt.Sprintf("exit status %d (warnings): %s", m.ExitCode, lastLines(stderr.String(), 5))
	case errors.As(err, &ee):
		m.Error = fmt.Sprintf("exit status %d: %s", m.ExitCode, lastLines(stderr.String()+stdout.String(), 10))
	default:
		m.Error = err.Error()
	}
	return m, stdout.String(), nil
}

// query runs inv untimed and returns its stdout (for look-ups between
// measured runs, such as a snapshot id).
func query(ctx context.Context, inv invocation) (string, error) {
	cmd := exec.CommandContext(ctx, inv.bin, inv.args...)
	cmd.Dir = inv.dir
	cmd.Env = inv.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", inv.bin, strings.Join(inv.args, " "), err, lastLines(stderr.String(), 5))
	}
	return stdout.String(), nil
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// lastLines returns the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	var out []string
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			out = append(out, l)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return strings.Join(out, " | ")
}

// jsonSummary returns s if it is one JSON object, else its last non-empty
// line if that is one (restic prints one JSON message per line), else nil.
func jsonSummary(s string) json.RawMessage {
	var buf bytes.Buffer
	for _, cand := range []string{strings.TrimSpace(s), lastLines(s, 1)} {
		if strings.HasPrefix(cand, "{") && json.Valid([]byte(cand)) {
			buf.Reset()
			if err := json.Compact(&buf, []byte(cand)); err == nil {
				return json.RawMessage(buf.Bytes())
			}
		}
	}
	return nil
}
