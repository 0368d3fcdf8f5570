package daemon

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/results"
)

// TestPolicyBudgetLimitsBackupAndScrub: a policy's read_rate holds its
// backups and its scrubs to at least the bytes they read divided by the
// rate (a lower bound only), and the backup is whole.
func TestPolicyBudgetLimitsBackupAndScrub(t *testing.T) {
	const rate = 4 << 20
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 1))
	var total int64
	for i := range 4 {
		b := make([]byte, 1<<20+i*4096)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(src, "raft-"+string(rune('a'+i))+".db"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		total += int64(len(b))
	}
	d, cfg := testDaemon{source: src, keepLast: 3, policyYAML: "    budget: {read_rate: 4MiB/s}\n"}.open(t)
	rec := d.backupNow(t, cfg)
	if rec.Outcome != results.Success || rec.FilesNew != 4 || rec.BytesRead != uint64(total) {
		t.Fatalf("backup: %+v", rec)
	}
	if took, min := rec.End.Sub(rec.Start), time.Duration(float64(rec.BytesRead)/rate*float64(time.Second)); took < min {
		t.Errorf("backup read %d bytes in %s at %d B/s: want at least %s", rec.BytesRead, took, rate, min)
	}
	start := time.Now()
	sc := d.runScrub(t.Context(), cfg, d.handle("local"), cfg.Policies[0])
	took := time.Since(start)
	if sc.Outcome != results.Success || sc.FilesVerified != 4 || sc.SilentChanges != 0 {
		t.Fatalf("scrub: %+v", sc)
	}
	if min := time.Duration(float64(total) / rate * float64(time.Second)); took < min {
		t.Errorf("scrub re-read %d bytes in %s at %d B/s: want at least %s", total, took, rate, min)
	}
}
