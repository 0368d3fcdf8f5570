package faults

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Render writes the renderings of r into dir: faults.md, faults-*.svg and
// faults-*.png (Charts), and faults.om (OpenMetrics). Each file is
// replaced atomically; charts of an earlier rendering that this one has no
// data for are removed, so the report never links a stale chart. It
// returns the names of the files written.
func Render(dir string, r *Results) ([]string, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("fault results: %w", err)
	}
	charts, err := Charts(r)
	if err != nil {
		return nil, err
	}
	om, err := OpenMetrics(r)
	if err != nil {
		return nil, err
	}
	type file struct {
		name string
		data []byte
	}
	files := []file{{"faults.md", Markdown(r, charts)}, {"faults.om", om}}
	for _, c := range charts {
		files = append(files, file{c.Name + ".svg", c.SVG}, file{c.Name + ".png", c.PNG})
	}
	var written []string
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data); err != nil {
			return written, err
		}
		written = append(written, f.name)
	}
	old, err := filepath.Glob(filepath.Join(dir, "faults-*"))
	if err != nil {
		return written, fmt.Errorf("list old charts: %w", err)
	}
	var errs []error
	for _, p := range old {
		base := filepath.Base(p)
		isChart := strings.HasSuffix(base, ".svg") || strings.HasSuffix(base, ".png")
		if isChart && !slices.Contains(written, base) {
			if err := os.Remove(p); err != nil {
				errs = append(errs, fmt.Errorf("remove stale chart: %w", err))
			}
		}
	}
	return written, errors.Join(errs...)
}
