package faults

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Write puts faults.json and every rendering beside it, and the report
// links exactly the charts written; a later run without the data of a
// chart removes that chart, and the report no longer links it.
func TestWriteRendersEverything(t *testing.T) {
	dir := t.TempDir()
	r := synthetic()
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	want := []string{"faults.json", "faults.md", "faults.om"}
	for _, c := range []string{"faults-recovery", "faults-detection", "faults-healthy", "faults-latency"} {
		want = append(want, c+".svg", c+".png")
	}
	slices.Sort(want)
	if got := dirNames(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	md, err := os.ReadFile(filepath.Join(dir, "faults.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range want {
		if strings.HasPrefix(n, "faults-") && !bytes.Contains(md, []byte("("+n+")")) {
			t.Errorf("faults.md does not link %s", n)
		}
	}
	om, err := os.ReadFile(filepath.Join(dir, "faults.om"))
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := OpenMetrics(r); !bytes.Equal(om, want) {
		t.Error("faults.om is not OpenMetrics(r)")
	}
	// The same results render the same bytes (committed renderings change
	// only when the results do).
	for i, c := range mustCharts(t, r) {
		again := mustCharts(t, r)[i]
		if !bytes.Equal(c.SVG, again.SVG) || !bytes.Equal(c.PNG, again.PNG) {
			t.Errorf("%s: two renderings differ", c.Name)
		}
	}
	back, err := Read(filepath.Join(dir, "faults.json"))
	if err != nil {
		t.Fatal(err)
	}
	if again := Markdown(back, mustCharts(t, back)); !bytes.Equal(again, md) {
		t.Error("the report of faults.json read back differs from the one written")
	}

	// The next run has no impact scenario.
	r.Cells = slices.DeleteFunc(r.Cells, func(c Cell) bool { return c.Scenario == ScenarioImpact })
	r.Baselines = nil
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	got := dirNames(t, dir)
	for _, n := range []string{"faults-latency.svg", "faults-latency.png"} {
		if slices.Contains(got, n) {
			t.Errorf("stale %s left behind", n)
		}
	}
	if !slices.Contains(got, "faults-healthy.svg") {
		t.Errorf("files %v", got)
	}
	md, _ = os.ReadFile(filepath.Join(dir, "faults.md"))
	if bytes.Contains(md, []byte("faults-latency")) {
		t.Error("faults.md still links the latency chart")
	}
}

func mustCharts(t *testing.T, r *Results) []Chart {
	t.Helper()
	c, err := Charts(r)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dirNames lists dir, leaving out nothing: a temporary file left behind
// would show.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}
