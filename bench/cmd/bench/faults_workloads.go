package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/bench/workload"
	"github.com/meshbackup/backupd/internal/units"
)

// manifest is the oracle of a tree: workload.Manifest (path → type, mode,
// size, BLAKE3 of the content, symlink target).
type manifest = map[string]workload.Entry

// faultWorkload is one data set of the fault benchmark.
type faultWorkload struct {
	name        string
	description string
	// key identifies the generated set (its options), for the cache.
	key      any
	generate func(dir string) error
	// change applies the step'th change of about 1% of the set to dir.
	change func(ctx context.Context, dir string, step int) error
}

// workloadNames lists the workloads in the order they run.
func workloadNames() []string { return []string{"mesh", "smallfiles"} }

func faultWorkloads(p profile) map[string]faultWorkload {
	mesh := p.mesh
	small := p.small
	return map[string]faultWorkload{
		"mesh": {
			name: "mesh",
			description: fmt.Sprintf("service-mesh volumes (bench/workload): %d Envoy proxies and %d Consul servers at scale %g; "+
				"the 1%% change is workload.MutateSome minutes with a twentieth of the proxies active", mesh.Proxies, mesh.ConsulServers, mesh.Scale),
			key:      mesh,
			generate: func(dir string) error { return workload.Generate(dir, mesh) },
			change:   func(ctx context.Context, dir string, step int) error { return meshChange(ctx, dir, mesh, step) },
		},
		"smallfiles": {
			name: "smallfiles",
			description: fmt.Sprintf("a node's worth of small files (workload.GenerateSmallFiles): %d files of 0.5–16 KiB in %d pod directories; "+
				"the 1%% change is workload.MutateSmallFiles", small.Files, small.Dirs),
			key:      small,
			generate: func(dir string) error { return workload.GenerateSmallFiles(dir, small) },
			change: func(_ context.Context, dir string, step int) error {
				_, err := workload.MutateSmallFiles(dir, small, step, 1)
				return err
			},
		},
	}
}

func selectWorkloads(want []string, p profile) ([]faultWorkload, error) {
	all := faultWorkloads(p)
	if want == nil {
		want = workloadNames()
	}
	var out []faultWorkload
	for _, n := range workloadNames() {
		if slices.Contains(want, n) {
			out = append(out, all[n])
		}
	}
	for _, n := range want {
		if _, ok := all[n]; !ok {
			return nil, fmt.Errorf("-workloads: unknown workload %q (want some of %s)", n, strings.Join(workloadNames(), ","))
		}
	}
	return out, nil
}

// meshChange applies workload.MutateSome steps to dir, each with the next
// twentieth of the proxies active and the Consul servers idle, until at
// least 1% of the bytes changed (at most 100 steps).
func meshChange(ctx context.Context, dir string, opt workload.Options, step int) error {
	before, err := indexBlocks(dir)
	if err != nil {
		return err
	}
	batch := max(1, opt.Proxies/smallChangeBatch)
	for i := 0; i < 100; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		lo := ((step*7 + i) * batch) % max(1, opt.Proxies)
		act := workload.Activity{
			Proxy:  func(p int) bool { return p >= lo && p < lo+batch },
			Server: func(int) bool { return false },
		}
		if err := workload.MutateSome(dir, opt, 1, act); err != nil {
			return fmt.Errorf("mutate %s: %w", dir, err)
		}
		cs, err := before.changes(dir)
		if err != nil {
			return err
		}
		if cs.Percent >= 1 {
			return nil
		}
	}
	return nil
}

// preparedWorkload is a generated set ready to be copied: the pristine
// tree and its manifest.
type preparedWorkload struct {
	w        faultWorkload
	dir      string
	manifest manifest
	info     faults.Workload
}

// setStamp records a generated set so a later run can reuse it.
type setStamp struct {
	Key            json.RawMessage `json:"key"`
	ManifestDigest string          `json:"manifest_blake3"`
}

// prepareWorkload generates w under sets/<name>/source unless a set with
// the same options and an unchanged manifest is there.
func prepareWorkload(_ context.Context, w faultWorkload, sets string, prog *progress) (*preparedWorkload, error) {
	dir := filepath.Join(sets, w.name, "source")
	stampPath := filepath.Join(sets, w.name, "stamp.json")
	key, err := json.Marshal(w.key)
	if err != nil {
		return nil, fmt.Errorf("workload %s: %w", w.name, err)
	}
	pw := &preparedWorkload{w: w, dir: dir}
	var st setStamp
	if b, err := os.ReadFile(stampPath); err == nil && json.Unmarshal(b, &st) == nil && string(st.Key) == string(key) {
		prog.logf("checking the cached %s set %s", w.name, dir)
		if m, err := workload.Manifest(dir); err == nil && manifestDigest(m) == st.ManifestDigest {
			pw.manifest = m
		}
	}
	if pw.manifest == nil {
		if err := os.RemoveAll(filepath.Join(sets, w.name)); err != nil {
			return nil, fmt.Errorf("remove the stale %s set: %w", w.name, err)
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return nil, fmt.Errorf("workload %s: %w", w.name, err)
		}
		prog.logf("generating the %s set in %s", w.name, dir)
		start := time.Now()
		if err := w.generate(dir); err != nil {
			return nil, fmt.Errorf("generate the %s set: %w", w.name, err)
		}
		m, err := workload.Manifest(dir)
		if err != nil {
			return nil, fmt.Errorf("manifest of the %s set: %w", w.name, err)
		}
		pw.manifest = m
		b, err := json.Marshal(setStamp{Key: key, ManifestDigest: manifestDigest(m)})
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(stampPath, b, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", stampPath, err)
		}
		prog.logf("generated the %s set in %v", w.name, time.Since(start).Round(time.Millisecond))
	}
	ts := treeStats(pw.manifest)
	pw.info = faults.Workload{Name: w.name, Description: w.description, Files: ts.Files, Bytes: ts.Bytes}
	prog.logf("%s: %d files (%s), %d dirs", w.name, ts.Files, units.Bytes(ts.Bytes), ts.Dirs)
	return pw, nil
}
