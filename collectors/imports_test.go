package collectors

import (
	"os/exec"
	"strings"
	"testing"
)

// Data flows one way (docs/DESIGN.md §2.3): the engine never imports Prometheus, the
// collectors or the exporter.
func TestEngineDoesNotImportMetrics(t *testing.T) {
	pkgs := []string{"archiver", "backend/...", "chunker", "checker", "config", "crypto", "daemon", "faultpoint", "prune",
		"repository", "restorer", "results", "snapshot"}
	args := []string{"list", "-deps"}
	for _, p := range pkgs {
		args = append(args, "github.com/meshbackup/backupd/backupd/"+p)
	}
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "prometheus") || strings.HasSuffix(dep, "/collectors") || strings.HasSuffix(dep, "/exporter") {
			t.Errorf("the engine depends on %s", dep)
		}
	}
}
