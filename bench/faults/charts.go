package faults

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Chart is one rendered chart: faults-<name>.svg and .png.
type Chart struct {
	// Name is the file name without its extension ("faults-recovery").
	Name  string
	Title string
	// About says in one sentence what the chart shows, for the report.
	About    string
	SVG, PNG []byte
}

// series is one set of bars: a tool (or tool and variant, or a baseline)
// with a value per group; missing groups have no bar.
type series struct {
	name   string
	values map[string]float64
	// color indexes plotutil's palette, so a tool keeps its color in
	// every chart.
	color int
}

// panel is one plot of a chart: bars per group and series.
type panel struct {
	title, yLabel string
	groups        []string
	series        []series
	// format prints a value for the bar's label.
	format func(float64) string
	yMax   float64 // 0: from the data
	// ownGroup: each series has one bar, in a group of its own, drawn
	// centred.
	ownGroup bool
}

func (p panel) empty() bool {
	for _, s := range p.series {
		if len(s.values) > 0 {
			return false
		}
	}
	return true
}

// Chart sizes: 10 in wide, 3.4 in per row of panels.
const (
	chartWidth = 10 * vg.Inch
	rowHeight  = 3.4 * vg.Inch
)

// Charts renders every chart the data of r allows: time to a good
// snapshot per scenario and tool (a row per workload), detection of
// repository corruption per tool, healthy-phase times and peak RSS per
// tool, and the proxy writer's latency per tool and with no backup. A
// chart without data is left out.
func Charts(r *Results) ([]Chart, error) {
	// Every series (a tool, or a tool and variant) keeps one color in
	// every chart of the run.
	colors := map[string]int{}
	for _, t := range toolsOf(r) {
		for i := range r.Cells {
			if c := &r.Cells[i]; c.Tool == t {
				if _, ok := colors[label(c)]; !ok {
					colors[label(c)] = len(colors)
				}
			}
		}
	}
	colors[noBackup] = len(colors)
	specs := []struct {
		name, title, about string
		width              vg.Length
		rows               [][]panel
	}{
		{"faults-recovery", "Time to a good snapshot after the fault",
			"Seconds from the fault until a snapshot whose restore matches its manifest existed again, per scenario and tool; no bar where the tool never got there or the scenario has no such figure.",
			chartWidth, recoveryPanels(r, colors)},
		{"faults-detection", "Repository corruption found",
			"Share of the damage injected into each tool's repository that its full check reported, and that it named (the damaged file or object), over every workload.",
			chartWidth * 0.6, detectionPanels(r, colors)},
		{"faults-healthy", "Healthy phase: wall times and peak RSS",
			"Wall time of each healthy-phase run and the highest peak RSS of them, per tool.",
			chartWidth, healthyPanels(r, colors)},
		{"faults-latency", "Proxy writer latency",
			"Latency of the proxy-like writer's append and fsync while each tool backs up, and with no backup running.",
			chartWidth, latencyPanels(r, colors)},
	}
	var out []Chart
	for _, s := range specs {
		if len(s.rows) == 0 {
			continue
		}
		svg, png, err := render(s.rows, s.width)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", s.name, err)
		}
		out = append(out, Chart{Name: s.name, Title: s.title, About: s.about, SVG: svg, PNG: png})
	}
	return out, nil
}

// label names a cell's series: its tool, and its variant if it has one.
func label(c *Cell) string {
	if c.Variant == "" {
		return c.Tool
	}
	return c.Tool + " (" + c.Variant + ")"
}

// seriesOf collects the series of the cells keep accepts, in tool order,
// one per tool and variant; values returns a cell's values by group (none
// for a cell without the figure).
func seriesOf(r *Results, colors map[string]int, keep func(*Cell) bool, values func(*Cell) map[string]float64) []series {
	var out []series
	idx := map[string]int{}
	for _, t := range toolsOf(r) {
		for i := range r.Cells {
			c := &r.Cells[i]
			if c.Tool != t || !keep(c) {
				continue
			}
			vs := values(c)
			if len(vs) == 0 {
				continue
			}
			n := label(c)
			j, seen := idx[n]
			if !seen {
				j = len(out)
				idx[n] = j
				out = append(out, series{name: n, values: map[string]float64{}, color: colors[n]})
			}
			for g, v := range vs {
				out[j].values[g] = v
			}
		}
	}
	return out
}

func recoveryPanels(r *Results, colors map[string]int) [][]panel {
	var rows [][]panel
	for _, w := range workloadsOf(r) {
		var groups []string
		for _, sc := range scenariosOf(r) {
			if slices.ContainsFunc(r.Cells, func(c Cell) bool {
				return c.Workload == w && c.Scenario == sc && c.TimeToRecoverSeconds != nil
			}) {
				groups = append(groups, sc)
			}
		}
		p := panel{title: "Time to a good snapshot: " + w, yLabel: "seconds", groups: groups, format: fmtSeconds,
			series: seriesOf(r, colors, func(c *Cell) bool { return c.Workload == w }, func(c *Cell) map[string]float64 {
				if v, ok := optional(c.TimeToRecoverSeconds); ok {
					return map[string]float64{c.Scenario: v}
				}
				return nil
			})}
		if !p.empty() {
			rows = append(rows, []panel{p})
		}
	}
	return rows
}

func detectionPanels(r *Results, colors map[string]int) [][]panel {
	type sums struct{ injected, detected, named int }
	per := map[string]*sums{}
	var tools []string
	for _, t := range toolsOf(r) {
		for _, c := range r.Cells {
			if c.Tool != t || c.Scenario != ScenarioRepoCorruption || c.Detection == nil || c.Detection.Injected == 0 {
				continue
			}
			s := per[t]
			if s == nil {
				s = &sums{}
				per[t] = s
				tools = append(tools, t)
			}
			s.injected += c.Detection.Injected
			s.detected += c.Detection.Detected
			s.named += c.Detection.Named
		}
	}
	if len(tools) == 0 {
		return nil
	}
	var ss []series
	for _, t := range tools {
		s := per[t]
		ss = append(ss, series{name: fmt.Sprintf("%s (%d injected)", t, s.injected), color: colors[t], values: map[string]float64{
			"detected": float64(s.detected) / float64(s.injected),
			"named":    float64(s.named) / float64(s.injected),
		}})
	}
	return [][]panel{{{title: "Repository corruption found by a full check", yLabel: "share of the injected damage",
		groups: []string{"detected", "named"}, series: ss, format: fmtPercent}}}
}

func healthyPanels(r *Results, colors map[string]int) [][]panel {
	var rows [][]panel
	for _, w := range workloadsOf(r) {
		keep := func(c *Cell) bool { return c.Workload == w && c.Scenario == ScenarioHealthy }
		var groups []string
		for _, c := range r.Cells {
			if keep(&c) {
				for _, k := range usageKeys(c.Usage) {
					if !slices.Contains(groups, k) && c.Usage[k].WallSeconds > 0 {
						groups = append(groups, k)
					}
				}
			}
		}
		slices.SortStableFunc(groups, func(a, b string) int { return usageRank(a) - usageRank(b) })
		times := panel{title: "Healthy phase wall time: " + w, yLabel: "seconds", format: fmtSeconds,
			series: seriesOf(r, colors, keep, func(c *Cell) map[string]float64 {
				vs := map[string]float64{}
				for _, g := range groups {
					if u, ok := c.Usage[g]; ok && u.WallSeconds > 0 {
						vs[PhaseTitle(g)] = u.WallSeconds
					}
				}
				return vs
			})}
		for _, g := range groups {
			times.groups = append(times.groups, PhaseTitle(g))
		}
		rss := panel{title: "Healthy phase peak RSS: " + w, yLabel: "MiB", groups: []string{"peak RSS"}, format: fmtMiB,
			series: seriesOf(r, colors, keep, func(c *Cell) map[string]float64 {
				if v, ok := healthyFigure(c, MeasurePeakRSS); ok {
					return map[string]float64{"peak RSS": v / (1 << 20)}
				}
				return nil
			})}
		if times.empty() && rss.empty() {
			continue
		}
		rows = append(rows, []panel{times, rss})
	}
	return rows
}

func usageRank(k string) int {
	if i := slices.Index(usageOrder, k); i >= 0 {
		return i
	}
	return len(usageOrder)
}

func latencyPanels(r *Results, colors map[string]int) [][]panel {
	var rows [][]panel
	quantiles := []struct {
		name string
		get  func(*Latency) float64
	}{
		{"p50", func(l *Latency) float64 { return l.P50Seconds }},
		{"p99", func(l *Latency) float64 { return l.P99Seconds }},
		{"max", func(l *Latency) float64 { return l.MaxSeconds }},
	}
	for _, w := range workloadsOf(r) {
		keep := func(c *Cell) bool {
			return c.Workload == w && c.Scenario == ScenarioImpact && c.Latency != nil && c.Latency.Samples > 0
		}
		var base *Latency
		for _, name := range sortedKeys(r.Baselines) {
			if sc, bw := splitBaseline(name); sc == ScenarioImpact && bw == w && r.Baselines[name].Samples > 0 {
				l := r.Baselines[name]
				base = &l
				break
			}
		}
		var row []panel
		for _, q := range quantiles {
			p := panel{title: "Writer latency " + q.name + ": " + w, yLabel: "milliseconds", format: fmtMillis, ownGroup: true}
			for _, s := range seriesOf(r, colors, keep, func(c *Cell) map[string]float64 {
				return map[string]float64{label(c): q.get(c.Latency) * 1000}
			}) {
				p.groups = append(p.groups, s.name)
				p.series = append(p.series, s)
			}
			if base != nil {
				p.groups = append(p.groups, noBackup)
				p.series = append(p.series, series{name: noBackup, color: colors[noBackup],
					values: map[string]float64{noBackup: q.get(base) * 1000}})
			}
			row = append(row, p)
		}
		if len(row[0].series) > 0 && !(len(row[0].series) == 1 && base != nil) {
			rows = append(rows, row)
		}
	}
	return rows
}

// noBackup names the baseline series: the writer with no backup running.
const noBackup = "no backup"

// render draws the panels, a row of tiles per row, as SVG and PNG.
func render(rows [][]panel, width vg.Length) (svg, png []byte, err error) {
	cols := 0
	for _, row := range rows {
		cols = max(cols, len(row))
	}
	h := rowHeight * vg.Length(len(rows))
	grid := make([][]*plot.Plot, len(rows))
	for i, row := range rows {
		grid[i] = make([]*plot.Plot, cols)
		for j := range cols {
			if j >= len(row) {
				grid[i][j] = plot.New()
				grid[i][j].HideAxes()
				continue
			}
			p, err := build(row[j], width/vg.Length(cols))
			if err != nil {
				return nil, nil, err
			}
			grid[i][j] = p
		}
	}
	tiles := draw.Tiles{Rows: len(rows), Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 6,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	draws := func(c vg.CanvasWriterTo) ([]byte, error) {
		dc := draw.New(c)
		canvases := plot.Align(grid, tiles, dc)
		for i := range grid {
			for j := range grid[i] {
				grid[i][j].Draw(canvases[i][j])
			}
		}
		var buf bytes.Buffer
		if _, err := c.WriteTo(&buf); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	if svg, err = draws(vgsvg.New(width, h)); err != nil {
		return nil, nil, fmt.Errorf("svg: %w", err)
	}
	if png, err = draws(vgimg.PngCanvas{Canvas: vgimg.New(width, h)}); err != nil {
		return nil, nil, fmt.Errorf("png: %w", err)
	}
	return svg, png, nil
}

// build makes one grouped bar plot: a bar per series in each group, the
// value printed above it.
func build(p panel, width vg.Length) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = p.title
	pl.Y.Label.Text = p.yLabel
	pl.Y.Min = 0
	pl.Legend.Top = true
	pl.Legend.TextStyle.Font.Size = vg.Points(8)
	pl.X.Tick.Label.Font.Size = vg.Points(8)
	if p.ownGroup {
		pl.X.Tick.Label.Font.Size = vg.Points(7)
	}
	pl.Add(plotter.NewGrid())
	n := len(p.series)
	if n == 0 || len(p.groups) == 0 {
		pl.HideAxes()
		return pl, nil
	}
	perGroup := n
	if p.ownGroup {
		perGroup = 1
	}
	bw := min(vg.Points(36), (width-vg.Inch)*0.8/vg.Length(len(p.groups)*perGroup))
	ymax := 0.0
	for j, s := range p.series {
		offset := bw * (vg.Length(j) - vg.Length(n-1)/2)
		if p.ownGroup {
			offset = 0
		}
		var legend *plotter.BarChart
		for gi, g := range p.groups {
			v, ok := s.values[g]
			if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			ymax = max(ymax, v)
			bar, err := plotter.NewBarChart(plotter.Values{v}, bw)
			if err != nil {
				return nil, err
			}
			bar.XMin = float64(gi)
			bar.Offset = offset
			bar.Color = plotutil.Color(s.color)
			bar.LineStyle.Width = vg.Length(0)
			pl.Add(bar)
			lb, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: float64(gi), Y: v}}, Labels: []string{p.format(v)}})
			if err != nil {
				return nil, err
			}
			lb.Offset = vg.Point{X: offset, Y: vg.Points(2)}
			for i := range lb.TextStyle {
				lb.TextStyle[i].XAlign = draw.XCenter
				lb.TextStyle[i].Font.Size = vg.Points(7)
				lb.TextStyle[i].Color = color.Gray{Y: 0x30}
			}
			pl.Add(lb)
			if legend == nil {
				legend = bar
			}
		}
		if legend != nil {
			pl.Legend.Add(s.name, legend)
		}
	}
	// Tick labels break before a variant, so long names do not collide.
	ticks := make([]string, len(p.groups))
	for i, g := range p.groups {
		ticks[i] = strings.Replace(g, " (", "\n(", 1)
	}
	pl.NominalX(ticks...)
	// Headroom above the highest bar for the legend in the top corner.
	pl.Y.Max = ymax * (1.15 + 0.1*float64(n))
	if p.yMax > 0 {
		pl.Y.Max = p.yMax
	}
	if pl.Y.Max == 0 {
		pl.Y.Max = 1
	}
	return pl, nil
}

func fmtSeconds(s float64) string {
	switch {
	case s == 0:
		return "0 s"
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1000)
	case s < 10:
		return fmt.Sprintf("%.2f s", s)
	case s < 100:
		return fmt.Sprintf("%.1f s", s)
	}
	return fmt.Sprintf("%.0f s", s)
}

func fmtMillis(ms float64) string {
	if ms < 10 {
		return fmt.Sprintf("%.2f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

func fmtMiB(m float64) string { return fmt.Sprintf("%.0f MiB", m) }

func fmtPercent(v float64) string {
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", v*100), "0"), ".") + "%"
}
