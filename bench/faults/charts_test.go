package faults

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"io"
	"slices"
	"strings"
	"testing"
)

// svgTexts parses an SVG document and returns its root element's name and
// the text of its <text> elements.
func svgTexts(t *testing.T, b []byte) (root string, texts []string) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	inText := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("svg does not parse: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = e.Name.Local
			}
			inText = e.Name.Local == "text"
		case xml.CharData:
			if inText {
				texts = append(texts, string(e))
			}
		case xml.EndElement:
			inText = false
		}
	}
	return root, texts
}

// Every chart of the synthetic run is written as an SVG document naming
// the tools it shows and as a PNG image that decodes and is not blank.
func TestCharts(t *testing.T) {
	r := synthetic()
	charts, err := Charts(r)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range charts {
		names = append(names, c.Name)
	}
	if want := []string{"faults-recovery", "faults-detection", "faults-healthy", "faults-latency"}; !slices.Equal(names, want) {
		t.Fatalf("charts %v, want %v", names, want)
	}
	for _, c := range charts {
		t.Run(c.Name, func(t *testing.T) {
			root, texts := svgTexts(t, c.SVG)
			if root != "svg" {
				t.Errorf("svg root element %q", root)
			}
			all := strings.Join(texts, "\n")
			for _, tool := range []string{Subject, "synthpeer-a", "synthpeer-b"} {
				if !strings.Contains(all, tool) {
					t.Errorf("svg names no %s; texts: %q", tool, texts)
				}
			}
			if c.Name == "faults-latency" && !strings.Contains(all, noBackup) {
				t.Errorf("latency chart has no baseline bar; texts: %q", texts)
			}
			img, err := png.Decode(bytes.NewReader(c.PNG))
			if err != nil {
				t.Fatalf("png: %v", err)
			}
			bounds := img.Bounds()
			if bounds.Dx() < 300 || bounds.Dy() < 200 {
				t.Fatalf("png is %v", bounds)
			}
			colors := map[[4]uint32]bool{}
			for y := bounds.Min.Y; y < bounds.Max.Y; y += 7 {
				for x := bounds.Min.X; x < bounds.Max.X; x += 7 {
					r, g, b, a := img.At(x, y).RGBA()
					colors[[4]uint32{r, g, b, a}] = true
				}
			}
			// Background, axes, text and one color per series at least.
			if len(colors) < 4 {
				t.Errorf("png has %d colors: blank", len(colors))
			}
		})
	}
}

// A chart with no data is left out: a run with healthy cells only has the
// healthy chart and no other.
func TestChartsWithoutData(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cells []Cell
		want  []string
	}{
		{"nothing", nil, nil},
		{"healthy only", []Cell{healthy(Subject, "w", 4, 0.5, 0.1, 3, 50), healthy("p", "w", 10, 1, 1, 5, 60)}, []string{"faults-healthy"}},
		{"not applicable everywhere", []Cell{{Tool: "p", Scenario: ScenarioImpact, Workload: "w", Outcome: NotApplicable, Verdict: "v", Reason: "r"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			charts, err := Charts(&Results{Cells: tc.cells})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range charts {
				names = append(names, c.Name)
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("charts %v, want %v", names, tc.want)
			}
		})
	}
}
