package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/meshbackup/backupd/internal/units"
)

// Ratio is backupd's value of one measure divided by the best peer's.
type Ratio struct {
	Measure   string   `json:"measure"`
	Unit      string   `json:"unit"` // "s", "KiB" or "requests"
	Backupd   *float64 `json:"backupd,omitempty"`
	Peer      string   `json:"best_peer,omitempty"`
	PeerValue *float64 `json:"best_peer_value,omitempty"`
	Ratio     *float64 `json:"ratio,omitempty"`
	Target    float64  `json:"target,omitempty"` // ratio must be at most this; 0: shown, not judged
	Strict    bool     `json:"strict,omitempty"` // ratio must be below Target
	Result    string   `json:"result"`           // PASS, FAIL, info (no target), or n/a when no peer completed the measure
	Note      string   `json:"note,omitempty"`
}

// ratioSpec defines one compared measure: value returns a tool's value and
// whether it counts (the run succeeded, the restore verified).
type ratioSpec struct {
	measure string
	unit    string
	target  float64
	strict  bool // the ratio must be below target, not at most
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

// noChangeRequestsMeasure is the S3 mode's request count comparison.
const noChangeRequestsMeasure = "no-change backup requests"

func ratioSpecs(s3 bool) []ratioSpec {
	specs := []ratioSpec{
		{"first backup wall", "s", 0.8, false, wallOf(func(t *ToolResult) *Measurement { return t.FirstBackup })},
		{"no-change backup wall", "s", 0.25, false, wallOf(func(t *ToolResult) *Measurement { return t.NoChange })},
		{smallChangeMeasure, "s", 0.25, false, wallOf(func(t *ToolResult) *Measurement { return t.SmallChange })},
		{minuteChangeMeasure, "s", 0, false, wallOf(func(t *ToolResult) *Measurement { return t.Change })},
		{"full restore wall", "s", 0.8, false, func(t *ToolResult) (float64, bool) { return t.Restore.wall(), t.restoreOK() }},
		// Peak RSS over the measured runs; only a tool that completed
		// them all has a comparable peak.
		{"peak RSS", "KiB", 1.0, false, func(t *ToolResult) (float64, bool) { return float64(t.PeakRSSKiB), t.restoreOK() }},
	}
	if s3 {
		// Fewer requests than any peer: ratio < 1.
		specs = append(specs, ratioSpec{noChangeRequestsMeasure, "requests", 1.0, true, func(t *ToolResult) (float64, bool) {
			n, ok := medianRequests(t.NoChangeTraffic)
			return float64(n), ok && t.NoChange.OK()
		}})
	}
	return specs
}

// medianRequests returns the median (the lower middle) request count of
// runs, false if there are none.
func medianRequests(runs []*Traffic) (int64, bool) {
	if len(runs) == 0 {
		return 0, false
	}
	ns := make([]int64, len(runs))
	for i, r := range runs {
		ns[i] = r.Requests
	}
	slices.Sort(ns)
	return ns[(len(ns)-1)/2], true
}

// computeRatios compares backupd with the best peer on each measure (and
// on the request count of the no-change backup with s3); nil if backupd was
// not run.
func computeRatios(tools []*ToolResult, s3 bool) []Ratio {
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
	for _, s := range ratioSpecs(s3) {
		r := Ratio{Measure: s.measure, Unit: s.unit, Target: s.target, Strict: s.strict}
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
			case s.strict && ratio < s.target, !s.strict && ratio <= s.target:
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
	if res.S3 != nil {
		fmt.Fprintf(&b, "**S3 mode**: every repository is a bucket (one per tool) of a local MinIO (%s) started by the bench, reached through the bench's counting proxy on 127.0.0.1; repo size is the sum of the bucket's object sizes.", res.S3.Server)
		for _, sk := range res.Skipped {
			fmt.Fprintf(&b, " %s skipped: %s.", sk.Tool, sk.Reason)
		}
		b.WriteString("\n\n")
	}
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
	if res.S3 != nil {
		b.WriteString(renderTraffic(res))
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
		switch {
		case r.Strict:
			target = fmt.Sprintf("< %.2f× (fewer than any peer)", r.Target)
		case r.Target > 0:
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
	switch unit {
	case "KiB":
		return fmtKiB(int64(v))
	case "requests":
		return fmt.Sprintf("%.0f", v)
	}
	return fmtSeconds(v)
}

// renderTraffic returns the S3 traffic table: per tool and operation, the
// requests by method and the body bytes sent and received.
func renderTraffic(res *Results) string {
	var b strings.Builder
	b.WriteString("\nS3 traffic through the counting proxy, per run (no-change and small-change: the median run by wall time, with the range of request counts over all runs); sent and received are the request and response bodies, from the tool's side:\n\n")
	b.WriteString("| tool | operation | requests | by method | sent | received |\n")
	b.WriteString("|---|---|---:|---|---:|---:|\n")
	for _, t := range res.Tools {
		ops := []struct {
			name string
			m    *Measurement
			all  []*Traffic
		}{
			{"init", t.Init, nil},
			{"first backup", t.FirstBackup, nil},
			{"no-change backup", t.NoChange, t.NoChangeTraffic},
			{"small change backup", t.SmallChange, t.SmallChangeTraffic},
			{"minute change backup", t.Change, nil},
			{"full restore", t.Restore, nil},
		}
		for _, op := range ops {
			if op.m == nil || op.m.S3 == nil {
				continue
			}
			tr := op.m.S3
			reqs := fmt.Sprintf("%d", tr.Requests)
			if len(op.all) > 1 {
				lo, hi := op.all[0].Requests, op.all[0].Requests
				for _, a := range op.all {
					lo, hi = min(lo, a.Requests), max(hi, a.Requests)
				}
				reqs += fmt.Sprintf(" (%d–%d)", lo, hi)
			}
			name := op.name
			if !op.m.OK() {
				name += " (failed)"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", t.Name, name, reqs, tr.methods(), units.Bytes(tr.SentBytes), units.Bytes(tr.ReceivedBytes))
		}
	}
	return b.String()
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
