package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/meshbackup/backupd/bench/faults"
)

// progress reports the fault benchmark's progress on stderr: on a
// terminal, lines for people (the scenario, tool and workload running,
// cells done of the total and the estimated time left, and what each run
// did); piped, one JSON object per finished cell and nothing else.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	// total is the number of cells; done those finished.
	total, done int
	now         func() time.Time
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty, start: time.Now(), now: time.Now}
}

func (p *progress) elapsed() time.Duration { return p.now().Sub(p.start).Round(time.Second) }

// left estimates the time left from the mean time per cell so far.
func (p *progress) left() string {
	if p.done == 0 || p.total <= p.done {
		return "?"
	}
	per := p.now().Sub(p.start) / time.Duration(p.done)
	return (per * time.Duration(p.total-p.done)).Round(time.Second).String()
}

// logf prints a detail line (terminal only).
func (p *progress) logf(format string, args ...any) {
	if p.tty {
		fmt.Fprintf(p.w, "faults %8s  %s\n", p.elapsed(), fmt.Sprintf(format, args...))
	}
}

// begin announces the next cell.
func (p *progress) begin(scenario, tool, wl string) {
	if p.tty {
		fmt.Fprintf(p.w, "faults %8s  [%d/%d cells, about %s left] %s: %s on %s\n",
			p.elapsed(), p.done, p.total, p.left(), scenario, tool, wl)
	}
}

// cellLine is the JSON line of a finished cell.
type cellLine struct {
	Scenario       string         `json:"scenario"`
	Tool           string         `json:"tool"`
	Workload       string         `json:"workload"`
	Variant        string         `json:"variant,omitempty"`
	Outcome        faults.Outcome `json:"outcome"`
	Verdict        string         `json:"verdict"`
	Done           int            `json:"cells_done"`
	Total          int            `json:"cells_total"`
	ElapsedSeconds float64        `json:"elapsed_seconds"`
}

// cellDone reports a finished cell.
func (p *progress) cellDone(c *faults.Cell) {
	p.done++
	if p.tty {
		fmt.Fprintf(p.w, "faults %8s  [%d/%d cells] %s %s %s: %s — %s\n",
			p.elapsed(), p.done, p.total, c.Scenario, c.Tool, c.Workload, c.Outcome, c.Verdict)
		return
	}
	b, err := json.Marshal(cellLine{Scenario: c.Scenario, Tool: c.Tool, Workload: c.Workload, Variant: c.Variant,
		Outcome: c.Outcome, Verdict: c.Verdict, Done: p.done, Total: p.total,
		ElapsedSeconds: p.now().Sub(p.start).Seconds()})
	if err == nil {
		fmt.Fprintf(p.w, "%s\n", b)
	}
}
