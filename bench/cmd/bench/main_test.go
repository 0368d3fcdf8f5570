package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/bench/workload"
)

func TestCopyTreeAndChanges(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	opt := workload.Options{Proxies: 2, ConsulServers: 1, Scale: 0.01, Seed: 7}
	if err := workload.Generate(src, opt); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	want, err := workload.Manifest(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := workload.Manifest(dst)
	if err != nil {
		t.Fatal(err)
	}
	if d := workload.Diff(want, got, false); len(d) > 0 {
		t.Fatalf("copy differs:\n%s", strings.Join(d, "\n"))
	}
	if manifestDigest(want) != manifestDigest(got) {
		t.Fatal("equal manifests have different digests")
	}
	if treeStats(got).Sockets == 0 {
		t.Fatal("no socket copied")
	}

	bi, err := indexBlocks(dst)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := bi.changes(dst)
	if err != nil {
		t.Fatal(err)
	}
	if cs.ChangedBytes != 0 || cs.TotalBytes != treeStats(got).Bytes {
		t.Fatalf("unchanged tree: %+v", cs)
	}
	// A renamed file is not a change; appended data is.
	if err := os.Rename(filepath.Join(dst, "proxies"), filepath.Join(dst, "moved")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dst, "new.bin"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(strings.Repeat("x", 5000))); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if cs, err = bi.changes(dst); err != nil {
		t.Fatal(err)
	}
	if cs.ChangedBytes != 5000 {
		t.Fatalf("changed %d bytes, want 5000", cs.ChangedBytes)
	}
}

func TestComputeRatios(t *testing.T) {
	ok := func(wall float64, rss int64) *Measurement { return &Measurement{WallSec: wall, MaxRSSKiB: rss} }
	tool := func(name string, first, restore float64, rss int64) *ToolResult {
		return &ToolResult{Name: name, FirstBackup: ok(first, rss), NoChange: ok(1, rss), SmallChange: ok(1, rss), Change: ok(1, rss),
			Restore: ok(restore, rss), RestoreVerified: true, PeakRSSKiB: rss}
	}
	bd := tool("backupd", 7, 10, 100)
	fast := tool("restic", 10, 20, 300)
	bad := tool("borg", 1, 1, 50)
	bad.RestoreVerified = false // does not count for restore or RSS
	bad.FirstBackup.Error = "exit status 2"
	bad.Errors = []string{"first backup: exit status 2"}
	rs := computeRatios([]*ToolResult{bd, fast, bad}, false)
	want := map[string]string{
		"first backup wall":     "PASS", // 7/10
		"no-change backup wall": "FAIL", // 1/1
		smallChangeMeasure:      "FAIL",
		minuteChangeMeasure:     "info", // shown, no target
		"full restore wall":     "PASS", // 10/20
		"peak RSS":              "PASS", // 100/300
	}
	for _, r := range rs {
		if r.Result != want[r.Measure] {
			t.Errorf("%s: %s (ratio %v, peer %s), want %s", r.Measure, r.Result, *r.Ratio, r.Peer, want[r.Measure])
		}
		if r.Measure == "first backup wall" && r.Peer != "restic" {
			t.Errorf("first backup compared with %s, want restic (borg failed)", r.Peer)
		}
	}
	if len(rs) != len(want) {
		t.Errorf("%d ratios, want %d", len(rs), len(want))
	}
	md := renderMarkdown(&Results{Tools: []*ToolResult{bd, fast, bad}, Ratios: rs})
	for _, s := range []string{"| backupd ", "| first backup wall | 7.00 s | restic 10.0 s | 0.70× | ≤ 0.80× | **PASS** |",
		"| minute change backup wall (0.0% of bytes changed) | 1.00 s | restic 1.00 s | 1.00× | – | **info** |",
		"- borg: first backup: exit status 2", "| borg | failed |"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}

func TestOutputHelpers(t *testing.T) {
	tb := &tailBuffer{limit: 10}
	for range 100 {
		tb.Write([]byte("0123456789abc"))
	}
	if got := tb.String(); got != "3456789abc" {
		t.Errorf("tail %q", got)
	}
	if s := jsonSummary("{\n  \"a\": 1\n}\n"); string(s) != `{"a":1}` {
		t.Errorf("indented summary %s", s)
	}
	if s := jsonSummary("progress\n{\"message_type\":\"summary\"}\n"); string(s) != `{"message_type":"summary"}` {
		t.Errorf("last-line summary %s", s)
	}
	if s := jsonSummary("no json"); s != nil {
		t.Errorf("summary %s from text", s)
	}
	for line, want := range map[string]string{
		"restic 0.14.0 compiled with go1.19.8 on linux/amd64": "0.14.0",
		"borg 1.2.4":                    "1.2.4",
		"v0.23.1 build: -(unknown)":     "0.23.1",
		"backupd version adf97ba-dirty": "adf97ba-dirty",
		"backupd version dev":           "dev",
	} {
		if got := shortVersion(line); got != want {
			t.Errorf("shortVersion(%q) = %q, want %q", line, got, want)
		}
	}
	if got := underTarget("/t", "/work/src/"); got != "/t/work/src" {
		t.Errorf("underTarget: %s", got)
	}
}

func TestMedian(t *testing.T) {
	ms := func(walls ...float64) []*Measurement {
		var out []*Measurement
		for _, w := range walls {
			out = append(out, &Measurement{WallSec: w})
		}
		return out
	}
	for _, tc := range []struct {
		walls []float64
		want  float64
	}{
		{[]float64{0.3}, 0.3},
		{[]float64{0.5, 0.1, 0.3}, 0.3},
		{[]float64{0.4, 0.1, 0.3, 0.2}, 0.2}, // the lower middle
	} {
		m, walls := median(ms(tc.walls...))
		if m.WallSec != tc.want || !slices.Equal(walls, tc.walls) {
			t.Errorf("median of %v: %v (walls %v), want %v", tc.walls, m.WallSec, walls, tc.want)
		}
	}
	failed := ms(0.1, 0.2, 0.3)
	failed[2].Error = "exit status 1"
	if m, _ := median(failed); m.OK() {
		t.Error("a failed run was hidden by the median")
	}
	if m, w := median(nil); m != nil || w != nil {
		t.Error("median of nothing")
	}
}
