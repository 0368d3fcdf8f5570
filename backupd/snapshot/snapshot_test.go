package snapshot_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

func TestDecodeTreeRefusesEscapingNames(t *testing.T) {
	h := repository.Hash(nil)
	for _, name := range []string{"..", ".", "", "a/b", "../../etc/passwd", "/abs", "nul\x00"} {
		t.Run(name, func(t *testing.T) {
			b, _ := json.Marshal(snapshot.Tree{Nodes: []snapshot.Node{{Name: name, Type: snapshot.TypeFile, Hash: &h}}})
			if _, err := snapshot.DecodeTree(b); !errors.Is(err, repository.ErrFormat) {
				t.Fatalf("name %q: want ErrFormat, got %v", name, err)
			}
		})
	}
	b, _ := json.Marshal(snapshot.Tree{Nodes: []snapshot.Node{{Name: "a", Type: snapshot.TypeFile, Hash: &h}, {Name: "a", Type: snapshot.TypeFile, Hash: &h}}})
	if _, err := snapshot.DecodeTree(b); !errors.Is(err, repository.ErrFormat) {
		t.Fatalf("duplicate names accepted: %v", err)
	}
}

func mk(seq uint64, at time.Time) *snapshot.Snapshot {
	s := &snapshot.Snapshot{Seq: seq, Time: at, Policy: "p"}
	s.ID = repository.Hash([]byte{byte(seq), byte(seq >> 8)})
	return s
}

func TestRetention(t *testing.T) {
	base := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	hourly := func(n int) []*snapshot.Snapshot {
		var s []*snapshot.Snapshot
		for i := range n {
			s = append(s, mk(uint64(i+1), base.Add(time.Duration(i)*time.Hour)))
		}
		return s
	}
	kept := func(ds []snapshot.Decision) []uint64 {
		var out []uint64
		for _, d := range ds {
			if d.Keep {
				out = append(out, d.Snapshot.Seq)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		snaps []*snapshot.Snapshot
		keep  snapshot.KeepPolicy
		want  []uint64
	}{
		{"keep last 3", hourly(10), snapshot.KeepPolicy{Last: 3}, []uint64{10, 9, 8}},
		{"daily 2 over 48h", hourly(48), snapshot.KeepPolicy{Daily: 2}, []uint64{48, 36}},
		{"hourly 2 plus last 1", hourly(5), snapshot.KeepPolicy{Hourly: 2, Last: 1}, []uint64{5, 4}},
		// Scenario 12: the clock jumped back two days before the newest
		// snapshot was taken; sequence order still makes it the newest
		// and it is kept.
		{"clock jumped back", append(hourly(5), mk(6, base.Add(-48*time.Hour))), snapshot.KeepPolicy{Last: 1}, []uint64{6}},
		{"clock jumped back, daily", append(hourly(5), mk(6, base.Add(-48*time.Hour))), snapshot.KeepPolicy{Daily: 1}, []uint64{6}},
		{"no rule matches newest", hourly(3), snapshot.KeepPolicy{Monthly: 0, Weekly: 0, Last: 0, Hourly: 0, Daily: 0}, []uint64{3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := kept(snapshot.ApplyPolicy(tc.snaps, tc.keep))
			if len(got) != len(tc.want) {
				t.Fatalf("kept %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("kept %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestLatestAndFind(t *testing.T) {
	base := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	snaps := []*snapshot.Snapshot{mk(1, base), mk(2, base.Add(-time.Hour))} // clock went back
	if l := snapshot.Latest(snaps, "p", "", ""); l.Seq != 2 {
		t.Fatalf("latest by sequence: got seq %d", l.Seq)
	}
	if s, err := snapshot.Find(snaps, snaps[0].ID.String()[:8], ""); err != nil || s != snaps[0] {
		t.Fatalf("find by prefix: %v", err)
	}
	if _, err := snapshot.Find(snaps, "ab", ""); err == nil {
		t.Fatal("2-character prefix accepted")
	}
	if snapshot.NextSeq(snaps, "p") != 3 || snapshot.NextSeq(snaps, "other") != 1 {
		t.Fatal("NextSeq")
	}
}
