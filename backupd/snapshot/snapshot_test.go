package snapshot_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

func sampleTree() *snapshot.Tree {
	a, b, c := repository.Hash([]byte("a")), repository.Hash([]byte("b")), repository.Hash([]byte("c"))
	return &snapshot.Tree{Nodes: []snapshot.Node{
		{Name: "access.log", Type: snapshot.TypeFile, Mode: 0o644, UID: 1337, GID: 1337, Size: 3 << 20,
			MtimeNS: 1764547200123456789, CtimeNS: 1764547200123456790, Inode: 1 << 40, Content: []repository.ID{a, b}, Hash: &c, TailRuns: 4},
		{Name: "empty", Type: snapshot.TypeFile, Mode: 0o600, Hash: &a},
		{Name: "certs", Type: snapshot.TypeDir, Mode: 0o755 | fs.ModeDir | fs.ModeSetgid, UID: 4294967295, MtimeNS: -1, Subtree: &b, Digest: &a},
		{Name: "data", Type: snapshot.TypeDir, Mode: 0o700 | fs.ModeDir, Subtree: &c},
		{Name: "..data", Type: snapshot.TypeSymlink, Mode: 0o777 | fs.ModeSymlink, Target: "..2026_11_22_00_00_00.123"},
		{Name: "ünïcode name", Type: snapshot.TypeSymlink, Mode: 0o777 | fs.ModeSymlink, Target: "../../elsewhere"},
	}}
}

func TestTreeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		tree *snapshot.Tree
	}{
		{"empty directory", &snapshot.Tree{}},
		{"every kind of entry", sampleTree()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.tree.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := snapshot.DecodeTree(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.tree.Nodes) == 0 {
				tc.tree.Nodes = []snapshot.Node{}
			}
			if !reflect.DeepEqual(got, tc.tree) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.tree)
			}
			again, _ := got.Encode()
			if !bytes.Equal(again, b) {
				t.Fatal("re-encoding a decoded tree gives other bytes")
			}
		})
	}
}

func TestEncodeSortsNodes(t *testing.T) {
	tr := sampleTree()
	b1, _ := tr.Encode()
	slices.Reverse(tr.Nodes)
	b2, _ := tr.Encode()
	if !bytes.Equal(b1, b2) {
		t.Fatal("encoding depends on the order of the nodes")
	}
}

// Every proper prefix of a valid tree is refused as truncated; bytes after
// the last entry are refused too.
func TestDecodeTreeTruncatedAndTrailing(t *testing.T) {
	b, _ := sampleTree().Encode()
	for n := range len(b) {
		_, err := snapshot.DecodeTree(b[:n])
		if !errors.Is(err, repository.ErrFormat) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("prefix of %d/%d bytes: want ErrFormat and ErrUnexpectedEOF, got %v", n, len(b), err)
		}
	}
	if _, err := snapshot.DecodeTree(append(slices.Clone(b), 0)); !errors.Is(err, repository.ErrFormat) {
		t.Fatalf("trailing byte accepted: %v", err)
	}
}

func TestDecodeTreeRefusesEscapingNames(t *testing.T) {
	h := repository.Hash(nil)
	for _, name := range []string{"..", ".", "", "a/b", "../../etc/passwd", "/abs", "nul\x00"} {
		t.Run(name, func(t *testing.T) {
			b, err := (&snapshot.Tree{Nodes: []snapshot.Node{{Name: name, Type: snapshot.TypeFile, Hash: &h}}}).Encode()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := snapshot.DecodeTree(b); !errors.Is(err, repository.ErrFormat) {
				t.Fatalf("name %q: want ErrFormat, got %v", name, err)
			}
		})
	}
}

// oneNode encodes a tree of one node and returns the header and the node's
// bytes, to build trees the encoder would not write.
func oneNode(t *testing.T, n snapshot.Node) (header, node []byte) {
	t.Helper()
	b, err := (&snapshot.Tree{Nodes: []snapshot.Node{n}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b[:2], b[2:] // version byte, count 1
}

func TestDecodeTreeRefusesMalformed(t *testing.T) {
	h := repository.Hash(nil)
	hdr, a := oneNode(t, snapshot.Node{Name: "a", Type: snapshot.TypeFile, Hash: &h})
	_, bNode := oneNode(t, snapshot.Node{Name: "b", Type: snapshot.TypeDir, Subtree: &h})
	two := func(first, second []byte) []byte {
		return slices.Concat([]byte{hdr[0], 2}, first, second)
	}
	badType := slices.Clone(a)
	badType[0] = 9
	// a's mode (0, one byte after type, name length and name) as 0x80 0x00.
	overlong := slices.Concat(a[:3], []byte{0x80, 0x00}, a[4:])
	badDigestFlag := slices.Clone(bNode)
	badDigestFlag[len(badDigestFlag)-1] = 2
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"duplicate names", two(a, a), "duplicate entry"},
		{"names out of order", two(bNode, a), "out of order"},
		{"unknown entry type", slices.Concat(hdr, badType), "unknown type 9"},
		{"bad digest flag", slices.Concat(hdr, badDigestFlag), "digest flag 2"},
		{"unknown encoding version", slices.Concat([]byte{7, 1}, a), "encoding version 7"},
		{"count larger than the data", slices.Concat([]byte{hdr[0], 200}, a), "does not fit"},
		{"empty input", nil, "unexpected EOF"},
		{"overlong varint", slices.Concat(hdr, overlong), "overlong varint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := snapshot.DecodeTree(tc.b)
			if !errors.Is(err, repository.ErrFormat) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want ErrFormat containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestEncodeRefusesInvalidNodes(t *testing.T) {
	h := repository.Hash(nil)
	for _, tc := range []struct {
		name string
		n    []snapshot.Node
	}{
		{"file without hash", []snapshot.Node{{Name: "f", Type: snapshot.TypeFile}}},
		{"directory without subtree", []snapshot.Node{{Name: "d", Type: snapshot.TypeDir}}},
		{"unknown type", []snapshot.Node{{Name: "x", Type: "fifo"}}},
		{"duplicate", []snapshot.Node{{Name: "f", Type: snapshot.TypeFile, Hash: &h}, {Name: "f", Type: snapshot.TypeFile, Hash: &h}}},
		{"file with a directory digest", []snapshot.Node{{Name: "f", Type: snapshot.TypeFile, Hash: &h, Digest: &h}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := (&snapshot.Tree{Nodes: tc.n}).Encode(); err == nil {
				t.Fatal("encoded")
			}
		})
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
	if s, err := snapshot.Find(snaps, nil, snaps[0].ID.String()[:8], ""); err != nil || s != snaps[0] {
		t.Fatalf("find by prefix: %v", err)
	}
	if _, err := snapshot.Find(snaps, nil, "ab", ""); err == nil {
		t.Fatal("2-character prefix accepted")
	}
	// An unreadable snapshot is never passed over: "latest" cannot be
	// resolved while one exists, and its own id names it as corrupt.
	badID := repository.Hash([]byte("unreadable"))
	bad := map[repository.ID]error{badID: errors.New("authentication failed")}
	for _, ref := range []string{"latest", badID.String()[:8]} {
		_, err := snapshot.Find(snaps, bad, ref, "p")
		if !errors.Is(err, repository.ErrCorrupt) || !strings.Contains(err.Error(), badID.Str()) {
			t.Fatalf("find %s with an unreadable snapshot: %v, want corruption naming %s", ref, err, badID.Str())
		}
	}
	if s, err := snapshot.Find(snaps, bad, snaps[1].ID.String()[:8], ""); err != nil || s != snaps[1] {
		t.Fatalf("find of a readable snapshot beside an unreadable one: %v", err)
	}
	if snapshot.NextSeq(snaps, "p") != 3 || snapshot.NextSeq(snaps, "other") != 1 {
		t.Fatal("NextSeq")
	}
}

// A snapshot's root metadata must be a directory's: restore applies it to
// the target directory.
func TestDecodeRefusesNonDirectoryRoot(t *testing.T) {
	base := `{"version":1,"policy":"p","tree":"` + repository.Hash(nil).String() + `","root":{"mode":%d}}`
	for _, tc := range []struct {
		mode fs.FileMode
		ok   bool
	}{
		{fs.ModeDir | 0o755, true},
		{fs.ModeDir | fs.ModeSetgid | fs.ModeSticky | 0o775, true},
		{fs.ModeDir | 0o2775, false}, // a Unix setgid bit is not a FileMode bit
		{0o644, false},
		{fs.ModeDir | fs.ModeSymlink | 0o777, false},
		{fs.ModeDir | fs.ModeDevice, false},
	} {
		_, err := snapshot.Decode([]byte(fmt.Sprintf(base, uint32(tc.mode))))
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, repository.ErrFormat)) {
			t.Errorf("root mode %v: %v", tc.mode, err)
		}
	}
}
