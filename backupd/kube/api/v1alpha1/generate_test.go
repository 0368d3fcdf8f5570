package v1alpha1_test

import (
	"bytes"
	"github.com/meshbackup/backupd/internal/tools"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/meshbackup/backupd/backupd/kube/kubetest"
)

// The committed CRDs and deepcopy code are what controller-gen makes of the
// types now: a marker or field changed without `make crds` fails here.
func TestGeneratedFilesUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs controller-gen")
	}
	cg, err := tools.Find("controller-gen")
	if err != nil {
		t.Fatal(err)
	}
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), cg, "crd:crdVersions=v1", "paths=./backupd/kube/api/...", "output:crd:artifacts:config="+out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen crd: %v\n%s", err, b)
	}
	gen, err := filepath.Glob(filepath.Join(out, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := filepath.Glob(filepath.Join(root, kubetest.CRDDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(gen) != len(committed) || len(gen) == 0 {
		t.Errorf("controller-gen makes %d CRD files, %s holds %d: run make crds", len(gen), kubetest.CRDDir, len(committed))
	}
	for _, g := range gen {
		want, _ := os.ReadFile(g)
		got, err := os.ReadFile(filepath.Join(root, kubetest.CRDDir, filepath.Base(g)))
		if err != nil {
			t.Errorf("%v: run make crds", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s/%s differs from what controller-gen makes: run make crds", kubetest.CRDDir, filepath.Base(g))
		}
	}

	cmd = exec.CommandContext(t.Context(), cg, "object", "paths=./backupd/kube/api/...", "output:stdout")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("controller-gen object: %v\n%s", err, stderr.Bytes())
	}
	got, err := os.ReadFile("zz_generated.deepcopy.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("zz_generated.deepcopy.go differs from what controller-gen makes: run make crds")
	}
}
