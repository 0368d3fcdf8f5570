package main

import (
	"encoding/json"
	"fmt"
	"github.com/meshbackup/backupd/internal/units"
	"os"
	"path/filepath"
	"strings"
)

// Ratio is backupd's value of one measure divided by the best peer's.
type Ratio struct {
	Measure   string   `json:"measure"`
	Unit      string   `json:"unit"` // "s" or "KiB"
	Backupd   *float64 `json:"backupd,omitempty"`
	Peer      string   `json:"best_peer,omitempty"`
	PeerValue *float64 `json:"best_peer_value,omitempty"`
	Ratio     *float64 `json:"ratio,omitempty"`
	Target    float64  `json:"target,omitempty"` // ratio must be at most this; 0: shown, not judged
	Result    string   `json:"result"`           // PASS, FAIL, info (no target), or n/a when no peer completed the measure
	Note      string   `json:"note,omitempty"`
}

// ratioSpec defines one compared measure: value returns a tool's value and
// whether it counts (the run succeeded, the restore verified).
type ratioSpec struct {
	measure string
	unit    string
	target  float64
	value   func(*ToolResult) (float64, bool)
}

func wallOf(pick func(*ToolResult) *Measurement) func(*ToolResult) (float64, bool) {
	return func(t *ToolResult) (float64, bool) {
		m := pick(t)
		return m.wall(), m.OK()
	}
}

func (m *Measurement) wall() float64 {
	if m == nil {
		return 0
	}
	return m.WallSec
}

// The measures of the backups after the small change (targeted at 1% of
// the bytes; the actual share is in Results.SmallChange) and after a
// simulated minute of the whole mesh (Results.Change).
const (
	smallChangeMeasure  = "small change backup wall"
	minuteChangeMeasure = "minute change backup wall"
)

func ratioSpecs() []ratioSpec {
	return []ratioSpec{
		{"first backup wall", "s", 0.8, wallOf(func(t *ToolResult) *Measurement { return t.FirstBackup })},
		{"no-change backup wall", "s", 0.25, wallOf(func(t *ToolResult) *Measurement { return t.NoChange })},
		{smallChangeMeasure, "s", 0.25, wallOf(func(t *ToolResult) *Measurement { return t.SmallChange })},
		{minuteChangeMeasure, "s", 0, wallOf(func(t *ToolResult) *Measurement { return t.Change })},
		{"full restore wall", "s", 0.8, func(t *ToolResult) (float64, bool) { return t.Restore.wall(), t.restoreOK() }},
		// Peak RSS over the measured runs; only a tool that completed
		// them all has a comparable peak.
		{"peak RSS", "KiB", 1.0, func(t *ToolResult) (float64, bool) { return float64(t.PeakRSSKiB), t.restoreOK() }},
	}
}

// computeRatios compares backupd with the best peer on each measure; nil if
// backupd was not run.
func computeRatios(tools []*ToolResult) []Ratio {
	var bd *ToolResult
	for _, t := range tools {
		if t.Name == "backupd" {
			bd = t
		}
	}
	if bd == nil {
		return nil
	}
	var out []Ratio
	for _, s := range ratioSpecs() {
		r := Ratio{Measure: s.measure, Unit: s.unit, Target: s.target}
		for _, t := range tools {
			if t == bd {
				continue
			}
			if v, ok := s.value(t); ok && (r.PeerValue == nil || v < *r.PeerValue) {
				r.Peer, r.PeerValue = t.Name, &v
			}
		}
		v, ok := s.value(bd)
		switch {
		case !ok:
			r.Result, r.Note = "FAIL", "backupd did not complete this measure"
			if s.measure == "full restore wall" && bd.Restore.OK() {
				r.Note = "backupd's restore differs from the source"
			}
		case r.PeerValue == nil:
			r.Backupd, r.Result, r.Note = &v, "n/a", "no peer completed this measure"
		default:
			ratio := v / *r.PeerValue
			r.Backupd, r.Ratio = &v, &ratio
			switch {
			case s.target == 0:
				r.Result = "info"
			case ratio <= s.target:
				r.Result = "PASS"
			default:
				r.Result = "FAIL"
			}
		}
		out = append(out, r)
	}
	return out
}

// writeJSON writes res to path (through a temporary file).
func writeJSON(path string, res *Results) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// renderMarkdown returns the results table and the ratios as markdown.
func renderMarkdown(res *Results) string {
	var b strings.Builder
	w, sc, c, e := res.Workload, res.SmallChange, res.Change, res.Environment
	fmt.Fprintf(&b, "Measured %s on %d CPUs (%s), %.1f GiB RAM, %s, %s.\n\n",
		res.Date.Format("2006-01-02 15:04 MST"), e.CPUs, e.CPUModel, float64(e.MemTotalMiB)/1024, e.Kernel, e.GoVersion)
	fmt.Fprintf(&b, "Source: %d proxies, %d Consul servers, scale %g, seed %d: %d files (%s), %d dirs, %d symlinks, %d sockets.  \n",
		w.Options.Proxies, w.Options.ConsulServers, w.Options.Scale, w.Options.Seed, w.Files, units.Bytes(w.Bytes), w.Dirs, w.Symlinks, w.Sockets)
	fmt.Fprintf(&b, "Small change: %d `workload.MutateSome` step(s), %d of %d proxies active, Consul idle (target %g%%): %s in new 4 KiB blocks = **%.2f%%** of %s (%s); files: %d new, %d changed (%s), %d removed.  \n",
		sc.Steps, sc.ActiveProxies, w.Options.Proxies, sc.TargetPercent, units.Bytes(sc.ChangedBytes), sc.Percent, units.Bytes(sc.TotalBytes), sc.topKinds(3),
		sc.Files.New, sc.Files.Changed, units.Bytes(sc.Files.Bytes), sc.Files.Removed)
	fmt.Fprintf(&b, "Minute change: %d `workload.Mutate` step (every proxy and Consul server): %s in new 4 KiB blocks = **%.2f%%** of %s (%s); files: %d new, %d changed (%s), %d removed.\n\n",
		c.Steps, units.Bytes(c.ChangedBytes), c.Percent, units.Bytes(c.TotalBytes), c.topKinds(3),
		c.Files.New, c.Files.Changed, units.Bytes(c.Files.Bytes), c.Files.Removed)

	for _, t := range res.Tools {
		if n := len(t.NoChangeWalls); n > 1 {
			fmt.Fprintf(&b, "No-change backups: %d runs per tool, taking turns; the median counts.\n\n", n)
			break
		}
	}
	fmt.Fprintf(&b, "| tool | first backup wall | first backup CPU | first backup RSS | no-change wall | %s change wall | minute (%s) change wall | restore wall | restore CPU | restore RSS | repo size |\n", pct(sc.Percent), pct(c.Percent))
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range res.Tools {
		restoreWall := secCell(t.Restore)
		if t.Restore.OK() && !t.RestoreVerified {
			restoreWall += " (differs)"
		}
		repo := "–"
		if t.RepoBytes > 0 {
			repo = units.Bytes(t.RepoBytes)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			strings.TrimSpace(t.Name+" "+shortVersion(t.Version)),
			secCell(t.FirstBackup), cpuCell(t.FirstBackup), rssCell(t.FirstBackup),
			secCell(t.NoChange), secCell(t.SmallChange), secCell(t.Change),
			restoreWall, cpuCell(t.Restore), rssCell(t.Restore), repo)
	}
	var errs []string
	for _, t := range res.Tools {
		for _, e := range t.Errors {
			errs = append(errs, fmt.Sprintf("- %s: %s", t.Name, e))
		}
		for _, m := range t.runs() {
			if m.Warning != "" {
				errs = append(errs, fmt.Sprintf("- %s (warning): %s", t.Name, m.Warning))
			}
		}
	}
	if len(errs) > 0 {
		b.WriteString("\nErrors:\n\n" + strings.Join(errs, "\n") + "\n")
	}
	if len(res.Ratios) == 0 {
		return b.String()
	}
	b.WriteString("\nbackupd against the fastest peer (lowest, for RSS):\n\n")
	b.WriteString("| measure | backupd | best peer | ratio | target | result |\n")
	b.WriteString("|---|---:|---:|---:|---:|:---:|\n")
	for _, r := range res.Ratios {
		bd, peer, ratio := "–", "–", "–"
		if r.Backupd != nil {
			bd = fmtValue(*r.Backupd, r.Unit)
		}
		if r.PeerValue != nil {
			peer = r.Peer + " " + fmtValue(*r.PeerValue, r.Unit)
		}
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2f×", *r.Ratio)
		}
		result := "**" + r.Result + "**"
		if r.Note != "" {
			result += " (" + r.Note + ")"
		}
		measure := r.Measure
		switch measure {
		case smallChangeMeasure:
			measure = fmt.Sprintf("%s (%s of bytes changed)", measure, pct(sc.Percent))
		case minuteChangeMeasure:
			measure = fmt.Sprintf("%s (%s of bytes changed)", measure, pct(c.Percent))
		}
		target := "–"
		if r.Target > 0 {
			target = fmt.Sprintf("≤ %.2f×", r.Target)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", measure, bd, peer, ratio, target, result)
	}
	return b.String()
}

// pct formats a percentage with two significant decimals at most.
func pct(p float64) string {
	if p >= 10 {
		return fmt.Sprintf("%.0f%%", p)
	}
	return fmt.Sprintf("%.1f%%", p)
}

func secCell(m *Measurement) string {
	switch {
	case m == nil:
		return "–"
	case !m.OK():
		return "failed"
	}
	return fmtSeconds(m.WallSec)
}

func cpuCell(m *Measurement) string {
	if !m.OK() {
		return "–"
	}
	return fmtSeconds(m.CPUSec)
}

func rssCell(m *Measurement) string {
	if !m.OK() {
		return "–"
	}
	return fmtKiB(m.MaxRSSKiB)
}

func fmtValue(v float64, unit string) string {
	if unit == "KiB" {
		return fmtKiB(int64(v))
	}
	return fmtSeconds(v)
}

func fmtSeconds(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.2f s", s)
	}
	return fmt.Sprintf("%.1f s", s)
}

func fmtKiB(kib int64) string { return units.Bytes(kib << 10) }

// shortVersion picks the version out of a tool's version line: the word
// after "version", else the first word that starts with a digit
// ("restic 0.14.0 compiled with ..." → "0.14.0", "v0.23.1 build" → "0.23.1").
func shortVersion(line string) string {
	fields := strings.Fields(line)
	for i, f := range fields[:max(0, len(fields)-1)] {
		if f == "version" { // "backupd version adf97ba-dirty"
			return fields[i+1]
		}
	}
	for _, f := range fields {
		if v := strings.TrimPrefix(f, "v"); v != "" && v[0] >= '0' && v[0] <= '9' {
			return v
		}
	}
	return ""
}
