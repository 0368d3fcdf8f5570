// Package tools finds the binaries that scripts/install-tools.sh installs
// (MinIO, etcd, kube-apiserver, Helm, controller-gen, kopia, restic): in its
// tool cache outside the clone, else on PATH,
// ${BACKUPD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/backupd/bin}. Tests, test
// harnesses and the benchmark use it; the backupd binary does not.
package tools

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Dir is the tool cache of scripts/install-tools.sh.
func Dir() (string, error) {
	if d := os.Getenv("BACKUPD_TOOLS"); d != "" {
		return d, nil
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no tool cache: no home directory: %w", err)
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "backupd", "bin"), nil
}

// Find returns the path of the named binary: in the tool cache, where
// install-tools.sh puts the versions the project pins (a restic on PATH
// may be Debian's older one), else on PATH. The error names the install
// command.
func Find(name string) (string, error) {
	dir, dirErr := Dir()
	if dirErr == nil {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if dirErr != nil {
		return "", fmt.Errorf("%s not on PATH and %w: run ./scripts/install-tools.sh %s", name, dirErr, name)
	}
	return "", fmt.Errorf("%s is neither at %s nor on PATH: run ./scripts/install-tools.sh %s", name, filepath.Join(dir, name), name)
}
