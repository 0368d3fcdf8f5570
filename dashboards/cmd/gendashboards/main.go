// Command gendashboards writes the generated dashboards and their
// ConfigMaps. Run it from the repository root (make dashboards).
//
// Imports: package dashboards only; no engine, collector or exporter code.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/meshbackup/backupd/dashboards"
)

func main() {
	files, err := dashboards.Files()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gendashboards:", err)
		os.Exit(1)
	}
	for path, b := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "gendashboards:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gendashboards:", err)
			os.Exit(1)
		}
	}
}
