package archiver

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/repotest"
)

// Files rewritten with new metadata are ordinary changes (docs/DESIGN.md
// §3.2): a backup that finds them read again from a point the previous
// backup had not read logs no WARN, only DEBUG lines and one INFO summary.
// Two such rewrites: a config dump renamed over another whose new inode is
// the one the previous backup knew under another name (as a file system
// recycles inodes when EDS files are rewritten by rename), and an
// append-only log edited in place as it grew, at its periodic full read.
func TestRewritesWithNewMetadataAreNotWarnings(t *testing.T) {
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	path := func(n string) string { return filepath.Join(src, n) }
	must(os.WriteFile(path("a.json"), []byte(`{"endpoints":["10.0.0.1"]}`), 0o644))
	must(os.WriteFile(path("b.json"), []byte(`{"endpoints":["10.0.0.2"]}`), 0o644))
	rng := rand.New(rand.NewPCG(1, 2))
	logData := make([]byte, 600<<10) // one chunk, at least the minimum size
	for i := range logData {
		logData[i] = byte(rng.Uint32())
	}
	must(os.WriteFile(path("access.log"), logData, 0o644))
	r, _ := repotest.NewMem(t)
	var logs bytes.Buffer
	backup := func() {
		t.Helper()
		logs.Reset()
		a, err := New(r, Options{Policy: "p", FullReadEvery: 2, AppendOnly: []string{"*.log"},
			Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Backup(t.Context(), src); err != nil {
			t.Fatal(err)
		}
	}
	appendLog := func(b []byte) {
		f, err := os.OpenFile(path("access.log"), os.O_WRONLY|os.O_APPEND, 0)
		must(err)
		_, err = f.Write(b)
		must(err)
		must(f.Close())
	}
	backup()
	appendLog([]byte("GET /healthz 200\n"))
	backup() // the log's tail alone is read: its full read is due next time
	// a.json is rewritten in place and renamed over b.json; a new a.json
	// takes its name.
	must(os.WriteFile(path("a.json"), []byte(`{"endpoints":["10.0.0.3","10.0.0.4"]}`), 0o644))
	must(os.Rename(path("a.json"), path("b.json")))
	must(os.WriteFile(path("a.json"), []byte(`{"endpoints":[]}`), 0o644))
	// The log is edited in place near its start, and grows.
	f, err := os.OpenFile(path("access.log"), os.O_WRONLY, 0)
	must(err)
	_, err = f.WriteAt([]byte("EDITED"), 10)
	must(err)
	must(f.Close())
	appendLog([]byte("GET /ready 200\n"))
	backup()

	out := logs.String()
	if strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
		t.Fatalf("ordinary rewrites logged as problems:\n%s", out)
	}
	if n := strings.Count(out, "level=DEBUG msg=\"file rewritten where the previous backup did not read it"); n != 2 {
		t.Errorf("%d DEBUG lines for the two rewritten files:\n%s", n, out)
	}
	var summaries []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "level=INFO") && strings.Contains(l, "files_rewritten=") {
			summaries = append(summaries, l)
		}
	}
	if len(summaries) != 1 || !strings.Contains(summaries[0], "files_rewritten=2") {
		t.Fatalf("want one INFO summary counting 2 rewritten files, got %q\n%s", summaries, out)
	}
}
