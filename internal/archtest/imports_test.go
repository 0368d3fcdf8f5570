package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/meshbackup/backupd"

type pkg struct {
	ImportPath string
	Name       string
	Imports    []string // direct, non-test
	Deps       []string // transitive, non-test
}

// listModule returns every package of the module with its imports, from
// `go list -deps`-style dependency data (non-test imports only: tests may use
// helpers such as collectors/collectorstest).
func listModule(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Name,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// under reports whether path is dir or a package below it (dir relative to
// the module root).
func under(path, dir string) bool {
	d := module + "/" + dir
	return path == d || strings.HasPrefix(path, d+"/")
}

func anyUnder(path string, dirs ...string) bool {
	for _, d := range dirs {
		if under(path, d) {
			return true
		}
	}
	return false
}

// TestImportRules keeps the rules of docs/DESIGN.md §2.3: the engine never
// imports metrics code, collectors never import the exporter, the exporter
// reads only the daemon's status types, the binary carries no benchmark
// code, and the generated artefacts
// (alerts, dashboards) and the benchmark import no engine code.
func TestImportRules(t *testing.T) {
	pkgs := listModule(t)
	engine := 0
	for _, p := range pkgs {
		forbid := func(deps []string, why string, bad func(string) bool) {
			for _, d := range deps {
				if bad(d) {
					t.Errorf("%s depends on %s: %s", p.ImportPath, d, why)
				}
			}
		}
		switch {
		case under(p.ImportPath, "backupd/kube/kubetest"):
			// The test harness of a real kube-apiserver (controller-runtime's
			// envtest, which depends on Prometheus); only tests import it.
		case under(p.ImportPath, "backupd") && p.Name != "main":
			engine++
			forbid(p.Deps, "the engine never imports metrics, exporter or generator code", func(d string) bool {
				return anyUnder(d, "collectors", "exporter", "alerts", "dashboards") ||
					strings.HasPrefix(d, "github.com/prometheus/") || strings.HasPrefix(d, "github.com/grafana/")
			})
		case p.ImportPath == module+"/backupd":
			forbid(p.Deps, "the production binary carries no test or demo tools (the simulator is bench/cmd/simulate)", func(d string) bool {
				return anyUnder(d, "bench")
			})
		case under(p.ImportPath, "collectors"):
			forbid(p.Deps, "collectors never import the exporter or the generators", func(d string) bool {
				return anyUnder(d, "exporter", "alerts", "dashboards")
			})
		case under(p.ImportPath, "exporter"):
			forbid(p.Imports, "the exporter serves a registry it is given and reads only the daemon's status types", func(d string) bool {
				return strings.HasPrefix(d, module+"/") && !anyUnder(d, "backupd/daemon", "backupd/results")
			})
		case anyUnder(p.ImportPath, "alerts", "dashboards", "bench"):
			forbid(p.Deps, "alerts, dashboards and bench import no engine, collector or exporter code", func(d string) bool {
				return anyUnder(d, "backupd", "collectors", "exporter")
			})
		}
	}
	if engine < 10 {
		t.Fatalf("found only %d engine packages; is the module path right?", engine)
	}
}
