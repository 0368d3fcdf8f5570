package workload

import (
	"bytes"
	"compress/flate"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateSmallFiles(t *testing.T) {
	dir := t.TempDir()
	opt := SmallFilesOptions{Files: 2000, Dirs: 20, Seed: 5}
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	for _, d := range []struct {
		root string
		opt  SmallFilesOptions
	}{{a, opt}, {b, opt}, {c, SmallFilesOptions{Files: 2000, Dirs: 20, Seed: 6}}} {
		if err := GenerateSmallFiles(d.root, d.opt); err != nil {
			t.Fatal(err)
		}
	}
	ma, err := Manifest(a)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := Manifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(ma, mb, false); len(d) > 0 {
		t.Fatalf("equal options, different trees: %v", d[:min(5, len(d))])
	}
	mc, err := Manifest(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(Diff(ma, mc, false)) == 0 {
		t.Fatal("another seed gave the same tree")
	}

	pods := map[string]bool{}
	hashes := map[string]int{}
	var files int
	var total int64
	var all bytes.Buffer
	for p, e := range ma {
		if e.Type != "file" {
			continue
		}
		files++
		total += e.Size
		hashes[e.Hash]++
		pods[strings.Split(p, "/")[1]] = true
		if e.Size < smallMin || e.Size > smallMax {
			if !strings.HasSuffix(p, "/ca-bundle.crt") {
				t.Errorf("%s: %d bytes, want 0.5–16 KiB", p, e.Size)
			}
		}
		if all.Len() < 4<<20 {
			b, err := os.ReadFile(filepath.Join(a, filepath.FromSlash(p)))
			if err != nil {
				t.Fatal(err)
			}
			all.Write(b)
		}
	}
	if files != opt.Files || len(pods) != opt.Dirs {
		t.Fatalf("%d files in %d pods, want %d in %d", files, len(pods), opt.Files, opt.Dirs)
	}
	// Some whole-file duplicates (the CA bundle in every pod), but few.
	dups := files - len(hashes)
	if dups < opt.Dirs-1 || dups > files/10 {
		t.Errorf("%d duplicate files of %d: want the shared bundle in every pod and little else", dups, files)
	}
	// Compressible, but not trivially.
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestSpeed)
	w.Write(all.Bytes())
	w.Close()
	if r := float64(z.Len()) / float64(all.Len()); r < 0.2 || r > 0.85 {
		t.Errorf("deflate ratio %.2f: want mixed content between 0.2 and 0.85", r)
	}
	if mean := total / int64(files); mean < 2<<10 || mean > 8<<10 {
		t.Errorf("mean size %d, want about 4.5 KiB", mean)
	}
}

func TestMutateSmallFiles(t *testing.T) {
	dir := t.TempDir()
	opt := SmallFilesOptions{Files: 3000, Dirs: 30, Seed: 2}
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, root := range []string{a, b} {
		if err := GenerateSmallFiles(root, opt); err != nil {
			t.Fatal(err)
		}
	}
	before, err := Manifest(a)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := MutateSmallFiles(a, opt, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MutateSmallFiles(b, opt, 1, 1); err != nil {
		t.Fatal(err)
	}
	after, err := Manifest(a)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := Manifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(after, mb, false); len(d) > 0 {
		t.Fatalf("equal trees mutated alike differ: %v", d[:min(5, len(d))])
	}
	changed := ch.Rewritten + ch.Appended + ch.Removed + ch.Added
	if changed < 15 || changed > 45 {
		t.Errorf("changed %d of 3000 files (%+v), want about 1%%", changed, ch)
	}
	if ch.Rewritten == 0 || ch.Appended+ch.Removed+ch.Added == 0 {
		t.Errorf("change %+v: want rewrites and some appends, removals or additions", ch)
	}
	if d := Diff(before, after, false); len(d) < changed {
		t.Errorf("%d manifest differences for %d changed files", len(d), changed)
	}
	// Another step changes other files.
	ch2, err := MutateSmallFiles(a, opt, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ch2 == ch {
		t.Errorf("step 2 did what step 1 did: %+v", ch2)
	}
	if _, err := MutateSmallFiles(a, SmallFilesOptions{Files: -1}, 3, 1); err == nil {
		t.Error("negative Files accepted")
	}
}
