// Package tools finds the binaries that scripts/install-tools.sh installs
// (MinIO, etcd, kube-apiserver, Helm, controller-gen, kopia): on PATH, else
// in its tool cache outside the clone,
// ${BACKUPD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/backupd/bin}. Tests, test
// harnesses and the benchmark use it; the backupd binary does not.
package tools

import (
	"errors"
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

// Find returns the path of the named binary: on PATH, else in the tool
// cache. The error names the install command.
func Find(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dir, err := Dir()
	if err != nil {
		return "", fmt.Errorf("%s not on PATH and %w: run ./scripts/install-tools.sh %s", name, err, name)
	}
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err == nil && (fi.IsDir() || fi.Mode()&0o111 == 0) {
		err = errors.New("not an executable file")
	}
	if err != nil {
		return "", fmt.Errorf("%s is neither on PATH nor at %s (%v): run ./scripts/install-tools.sh %s", name, p, err, name)
	}
	return p, nil
}
