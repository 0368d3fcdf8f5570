package faults

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshbackup/backupd/internal/units"
)

// Markdown renders r as the report faults.md: a summary of the run, the
// outcome classes, the healthy phase against backupd's targets, the places
// where a peer does better, one scorecard per scenario, and the charts
// (linked by file name; they are written beside the report).
func Markdown(r *Results, charts []Chart) []byte {
	var b strings.Builder
	tools := toolsOf(r)
	b.WriteString("# Fault-tolerance benchmark\n\n")
	b.WriteString("Generated from `faults.json` (package `bench/faults`); `go run ./bench/cmd/faultreport faults.json` renders it again.\n\n")
	writeSummary(&b, r, tools)
	writeClasses(&b)
	writeHealthy(&b, r, tools)
	writeFindings(&b, r)
	writeScenarios(&b, r, tools)
	if len(charts) > 0 {
		b.WriteString("## Charts\n\n")
		for _, c := range charts {
			fmt.Fprintf(&b, "### %s\n\n%s\n\n![%s](%s.svg)\n\n[PNG](%s.png)\n\n", c.Title, c.About, c.Title, c.Name, c.Name)
		}
	}
	return []byte(b.String())
}

func writeSummary(b *strings.Builder, r *Results, tools []string) {
	b.WriteString("## Summary\n\n| | |\n|---|---|\n")
	run := "—"
	switch {
	case !r.Started.IsZero() && !r.Finished.IsZero():
		run = fmt.Sprintf("%s to %s (running time %s)", fmtTime(r.Started), fmtTime(r.Finished), fmtDuration(r.Finished.Sub(r.Started)))
	case !r.Started.IsZero():
		run = "started " + fmtTime(r.Started) + ", not finished"
	}
	fmt.Fprintf(b, "| date | %s |\n", run)
	fmt.Fprintf(b, "| profile | %s (seed %d) |\n", cellText(orDash(r.Profile)), r.Seed)
	h := r.Host
	host := orDash(h.Hostname)
	var parts []string
	if h.CPUs > 0 {
		parts = append(parts, fmt.Sprintf("%d CPUs", h.CPUs))
	}
	if h.GoOS != "" {
		parts = append(parts, h.GoOS+"/"+h.GoArch)
	}
	if h.Kernel != "" {
		parts = append(parts, "kernel "+h.Kernel)
	}
	if len(parts) > 0 {
		host += " (" + strings.Join(parts, ", ") + ")"
	}
	fmt.Fprintf(b, "| host | %s |\n", cellText(host))
	if r.CheckRestores != "" {
		fmt.Fprintf(b, "| verification restores | into %s; the healthy phase's timed restores and the crash-restore scenario's on the disk |\n", cellText(r.CheckRestores))
	}
	var vs []string
	for _, t := range tools {
		vs = append(vs, strings.TrimSpace(t+" "+toolVersion(r, t)))
	}
	fmt.Fprintf(b, "| versions | %s |\n\n", cellText(strings.Join(vs, ", ")))

	// Outcome counts per tool.
	b.WriteString("Cells per outcome class (a cell is one tool, scenario, workload and variant):\n\n| tool |")
	for _, o := range Outcomes() {
		fmt.Fprintf(b, " %s |", o.Label())
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(Outcomes())) + "\n")
	for _, t := range tools {
		fmt.Fprintf(b, "| %s |", cellText(t))
		for _, o := range Outcomes() {
			n := 0
			for _, c := range r.Cells {
				if c.Tool == t && c.Outcome == o {
					n++
				}
			}
			fmt.Fprintf(b, " %d |", n)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")

	if len(r.Tools) > 0 {
		b.WriteString("| tool | version | settings |\n|---|---|---|\n")
		for _, t := range r.Tools {
			fmt.Fprintf(b, "| %s | %s | %s |\n", cellText(t.Name), cellText(orDash(t.Version)), cellText(orDash(t.Settings)))
		}
		b.WriteString("\n")
	}
	if len(r.Workloads) > 0 {
		b.WriteString("| workload | description | files | size |\n|---|---|---:|---:|\n")
		for _, w := range r.Workloads {
			fmt.Fprintf(b, "| %s | %s | %d | %s |\n", cellText(w.Name), cellText(orDash(w.Description)), w.Files, units.Bytes(w.Bytes))
		}
		b.WriteString("\n")
	}
}

func writeClasses(b *strings.Builder) {
	b.WriteString("## Outcome classes\n\nBest first; a cell's outcome is the worst of its trials.\n\n")
	for i, o := range Outcomes() {
		rank := fmt.Sprintf("%d", i)
		if o == NotApplicable {
			rank = "–"
		}
		fmt.Fprintf(b, "- %s **%s** (`%s`): %s.\n", rank, o.Label(), o, o.Description())
	}
	b.WriteString("\n")
}

func writeHealthy(b *strings.Builder, r *Results, tools []string) {
	ratios := HealthyRatios(r)
	if len(ratios) == 0 {
		return
	}
	b.WriteString("## Healthy phase against the targets\n\n")
	b.WriteString("backupd's figure divided by the best peer's. Only peers with the figure count, and for the restore only a verified one (the cell's outcome neither silent wrong data nor data lost).\n\n")
	var peers []string
	for _, t := range tools {
		if t != Subject {
			peers = append(peers, t)
		}
	}
	for _, w := range workloadsOf(r) {
		var rows []Ratio
		for _, rt := range ratios {
			if rt.Workload == w {
				rows = append(rows, rt)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(b, "### %s\n\n| measure | %s |", cellText(w), Subject)
		for _, p := range peers {
			fmt.Fprintf(b, " %s |", cellText(p))
		}
		b.WriteString(" best peer | backupd ÷ best peer | target | |\n|---|---:|")
		b.WriteString(strings.Repeat("---:|", len(peers)) + "---|---:|---:|---|\n")
		for _, rt := range rows {
			f := fmtSeconds
			if rt.Target.Measure == MeasurePeakRSS {
				f = fmtBytes
			}
			subj := "—"
			if rt.Subject != nil {
				subj = f(*rt.Subject)
			}
			fmt.Fprintf(b, "| %s | %s |", rt.Target.Title, subj)
			for _, p := range peers {
				cell := "—"
				for _, pf := range rt.Peers {
					if pf.Tool == p {
						cell = f(pf.Value)
					}
				}
				fmt.Fprintf(b, " %s |", cell)
			}
			best, ratio := "—", "—"
			if rt.Best != nil {
				best = cellText(rt.Best.Tool) + " " + f(rt.Best.Value)
			}
			if rt.Status != NoFigure {
				ratio = fmt.Sprintf("%.2f×", rt.Value)
			}
			status := string(rt.Status)
			switch rt.Status {
			case Met:
				status = "**met**"
			case Missed:
				status = "**missed**"
			}
			fmt.Fprintf(b, " %s | %s | ≤ %.2f× | %s |\n", best, ratio, rt.Target.Max, status)
		}
		b.WriteString("\n")
	}
}

func writeFindings(b *strings.Builder, r *Results) {
	b.WriteString("## Where a peer does better\n\n")
	fs := PeerBetter(r)
	if len(fs) == 0 {
		b.WriteString("Nowhere in this run: no peer's outcome ranks better than backupd's, and no figure of a peer beats backupd's.\n\n")
		return
	}
	b.WriteString("Every cell where a peer's outcome ranks better than backupd's, and every figure of a peer that beats backupd's figure of the same measure in the same scenario and workload.\n\n")
	for _, f := range fs {
		where := fmt.Sprintf("%s / %s", ScenarioTitle(f.Scenario), orDash(f.Workload))
		peer := f.Peer
		if f.PeerVariant != "" {
			peer += " (" + f.PeerVariant + ")"
		}
		subj := Subject
		if f.SubjectVariant != "" {
			subj += " (" + f.SubjectVariant + ")"
		}
		if f.Measure == MeasureOutcome {
			fmt.Fprintf(b, "- **%s**, %s: %s (%s) against %s's %s (%s).\n", oneLine(peer), oneLine(where),
				f.PeerOutcome.Label(), oneLine(f.PeerVerdict), oneLine(subj), f.SubjectOutcome.Label(), oneLine(f.SubjectVerdict))
			continue
		}
		cmp := ""
		if f.PeerValue != 0 && f.Unit != unitShare && f.Unit != unitCount {
			cmp = fmt.Sprintf(" (%s's is %.2f× this)", oneLine(subj), f.SubjectValue/f.PeerValue)
		}
		fmt.Fprintf(b, "- **%s**, %s: %s %s against %s's %s%s.\n", oneLine(peer), oneLine(where), f.Title,
			fmtUnit(f.PeerValue, f.Unit), oneLine(subj), fmtUnit(f.SubjectValue, f.Unit), cmp)
	}
	b.WriteString("\n")
}

// rowKey is one row of a scorecard: a workload and a variant.
type rowKey struct{ workload, variant string }

func writeScenarios(b *strings.Builder, r *Results, tools []string) {
	b.WriteString("## Scenarios\n\n")
	for _, sc := range scenariosOf(r) {
		n := slices.Index(Scenarios(), sc)
		if sc == ScenarioHealthy {
			fmt.Fprintf(b, "### %s (`%s`)\n\n", ScenarioTitle(sc), sc)
		} else {
			fmt.Fprintf(b, "### %d. %s (`%s`)\n\n", n, ScenarioTitle(sc), sc)
		}
		var cells []*Cell
		var rows []rowKey
		for _, w := range workloadsOf(r) {
			var variants []string
			for i := range r.Cells {
				c := &r.Cells[i]
				if c.Scenario != sc || c.Workload != w {
					continue
				}
				cells = append(cells, c)
				if !slices.Contains(variants, c.Variant) {
					variants = append(variants, c.Variant)
				}
			}
			slices.Sort(variants)
			for _, v := range variants {
				rows = append(rows, rowKey{w, v})
			}
		}
		var cols []string
		for _, t := range tools {
			if slices.ContainsFunc(cells, func(c *Cell) bool { return c.Tool == t }) {
				cols = append(cols, t)
			}
		}
		b.WriteString("| workload |")
		for _, t := range cols {
			fmt.Fprintf(b, " %s |", cellText(t))
		}
		b.WriteString("\n|---|" + strings.Repeat("---|", len(cols)) + "\n")
		for _, k := range rows {
			name := orDash(k.workload)
			if k.variant != "" {
				name += " / " + k.variant
			}
			fmt.Fprintf(b, "| %s |", cellText(name))
			for _, t := range cols {
				i := slices.IndexFunc(cells, func(c *Cell) bool { return c.Tool == t && c.Workload == k.workload && c.Variant == k.variant })
				if i < 0 {
					b.WriteString(" — |")
					continue
				}
				fmt.Fprintf(b, " %s |", cellText(verdictText(cells[i])))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
		writeFigures(b, cells)
		writeHumanSteps(b, cells)
		writeBaselines(b, r, sc)
	}
	var rest []string
	for _, name := range sortedKeys(r.Baselines) {
		if sc, _ := splitBaseline(name); !slices.Contains(scenariosOf(r), sc) {
			rest = append(rest, name)
		}
	}
	if len(rest) > 0 {
		b.WriteString("### Other baselines\n\n")
		writeBaselineTable(b, r, rest)
	}
}

// verdictText is a scorecard cell: the outcome class, then the verdict in
// the harness's words (and the reason a scenario does not apply).
func verdictText(c *Cell) string {
	s := "**" + c.Outcome.Label() + "**: " + c.Verdict
	if c.Reason != "" && !strings.Contains(c.Verdict, c.Reason) {
		s += " (" + c.Reason + ")"
	}
	return s
}

// figureColumn is one column of a scenario's figures table.
type figureColumn struct {
	title string
	get   func(*Cell) string
}

func writeFigures(b *strings.Builder, cells []*Cell) {
	var keys []string
	for _, c := range cells {
		for _, k := range usageKeys(c.Usage) {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.SortStableFunc(keys, func(a, b string) int { return usageRank(a) - usageRank(b) })
	cols := []figureColumn{
		{"trials", trialsText},
		{"time to detect", func(c *Cell) string { return optSeconds(c.TimeToDetectSeconds) }},
		{"time to a good snapshot", func(c *Cell) string { return optSeconds(c.TimeToRecoverSeconds) }},
	}
	for _, k := range keys {
		cols = append(cols, figureColumn{PhaseTitle(k) + " wall (CPU)", func(c *Cell) string {
			u, ok := c.Usage[k]
			if !ok {
				return ""
			}
			return fmt.Sprintf("%s (%s)", fmtSeconds(u.WallSeconds), fmtSeconds(u.CPUSeconds))
		}})
	}
	cols = append(cols,
		figureColumn{"peak RSS", func(c *Cell) string {
			var peak int64
			for _, u := range c.Usage {
				peak = max(peak, u.PeakRSSBytes)
			}
			if peak == 0 {
				return ""
			}
			return units.Bytes(peak)
		}},
		figureColumn{"damage detected / named / injected", func(c *Cell) string {
			if d := c.Detection; d != nil {
				return fmt.Sprintf("%d / %d / %d", d.Detected, d.Named, d.Injected)
			}
			return ""
		}},
		figureColumn{"restores refused / silent", func(c *Cell) string {
			if d := c.Detection; d != nil {
				return fmt.Sprintf("%d / %d", d.RestoreRefused, d.RestoreSilent)
			}
			return ""
		}},
		figureColumn{"full (incremental) check", func(c *Cell) string {
			d := c.Detection
			if d == nil || (d.FullCheckSeconds == 0 && d.IncrementalCheckSeconds == nil) {
				return ""
			}
			s := fmtSeconds(d.FullCheckSeconds)
			if d.IncrementalCheckSeconds != nil {
				s += " (" + fmtSeconds(*d.IncrementalCheckSeconds) + ")"
			}
			return s
		}},
		figureColumn{"space left / after prune", func(c *Cell) string {
			if o := c.Orphans; o != nil {
				return units.Bytes(o.LeftBytes) + " / " + units.Bytes(o.AfterPruneBytes)
			}
			return ""
		}},
		figureColumn{"writer p50 / p99 / max", func(c *Cell) string {
			if l := c.Latency; l != nil && l.Samples > 0 {
				return latencyText(l)
			}
			return ""
		}},
	)
	var used []figureColumn
	for _, col := range cols {
		if slices.ContainsFunc(cells, func(c *Cell) bool { return col.get(c) != "" }) {
			used = append(used, col)
		}
	}
	if len(used) == 0 {
		return
	}
	b.WriteString("| tool | workload |")
	for _, col := range used {
		fmt.Fprintf(b, " %s |", col.title)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---:|", len(used)) + "\n")
	for _, c := range cells {
		w := orDash(c.Workload)
		if c.Variant != "" {
			w += " / " + c.Variant
		}
		fmt.Fprintf(b, "| %s | %s |", cellText(c.Tool), cellText(w))
		for _, col := range used {
			fmt.Fprintf(b, " %s |", cellText(orDash(col.get(c))))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// trialsText counts a cell's trials by outcome: "5: 4 survived exact, 1
// recovered automatically".
func trialsText(c *Cell) string {
	if len(c.Trials) == 0 {
		return ""
	}
	var parts []string
	for _, o := range Outcomes() {
		n := 0
		for _, t := range c.Trials {
			if t.Outcome == o {
				n++
			}
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o.Label()))
		}
	}
	return fmt.Sprintf("%d: %s", len(c.Trials), strings.Join(parts, ", "))
}

func writeHumanSteps(b *strings.Builder, cells []*Cell) {
	var lines []string
	for _, c := range cells {
		var steps []string
		n := 0
		for _, t := range c.Trials {
			if len(t.HumanSteps) > 0 {
				n++
			}
			for _, s := range t.HumanSteps {
				if !slices.Contains(steps, s) {
					steps = append(steps, s)
				}
			}
		}
		if len(steps) == 0 {
			continue
		}
		w := orDash(c.Workload)
		if c.Variant != "" {
			w += " / " + c.Variant
		}
		quoted := make([]string, len(steps))
		for i, s := range steps {
			quoted[i] = "`" + strings.ReplaceAll(oneLine(s), "`", "'") + "`"
		}
		lines = append(lines, fmt.Sprintf("- %s, %s: %s (in %d of %d trials)", oneLine(c.Tool), oneLine(w), strings.Join(quoted, ", "), n, len(c.Trials)))
	}
	if len(lines) > 0 {
		b.WriteString("Manual steps the tools needed:\n\n" + strings.Join(lines, "\n") + "\n\n")
	}
}

func writeBaselines(b *strings.Builder, r *Results, sc string) {
	var names []string
	for _, name := range sortedKeys(r.Baselines) {
		if s, _ := splitBaseline(name); s == sc {
			names = append(names, name)
		}
	}
	if len(names) > 0 {
		b.WriteString("With no backup running:\n\n")
		writeBaselineTable(b, r, names)
	}
}

func writeBaselineTable(b *strings.Builder, r *Results, names []string) {
	b.WriteString("| baseline | samples | writer p50 / p99 / max |\n|---|---:|---:|\n")
	for _, n := range names {
		l := r.Baselines[n]
		fmt.Fprintf(b, "| %s | %d | %s |\n", cellText(n), l.Samples, latencyText(&l))
	}
	b.WriteString("\n")
}

func latencyText(l *Latency) string {
	return fmt.Sprintf("%s / %s / %s", fmtLatency(l.P50Seconds), fmtLatency(l.P99Seconds), fmtLatency(l.MaxSeconds))
}

func toolVersion(r *Results, name string) string {
	for _, t := range r.Tools {
		if t.Name == name {
			return t.Version
		}
	}
	return ""
}

func optSeconds(v *float64) string {
	if v == nil {
		return ""
	}
	return fmtSeconds(*v)
}

func fmtBytes(v float64) string { return units.Bytes(int64(v)) }

// fmtLatency prints a writer latency with a unit that keeps three figures.
func fmtLatency(s float64) string {
	switch {
	case s == 0:
		return "0"
	case s < 1e-3:
		return fmt.Sprintf("%.0f µs", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.3g ms", s*1e3)
	}
	return fmtSeconds(s)
}

func fmtUnit(v float64, unit string) string {
	switch unit {
	case unitSeconds:
		if v < 0.01 && v > 0 {
			return fmtLatency(v)
		}
		return fmtSeconds(v)
	case unitBytes:
		return fmtBytes(v)
	case unitShare:
		return fmtPercent(v)
	}
	return formatFloat(v)
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%d h %d min", h, m)
	case m > 0:
		return fmt.Sprintf("%d min %d s", m, s)
	}
	return fmt.Sprintf("%d s", s)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// oneLine folds newlines into spaces.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// cellText makes s safe in a table cell: one line, pipes escaped.
func cellText(s string) string {
	return strings.ReplaceAll(oneLine(s), "|", `\|`)
}
