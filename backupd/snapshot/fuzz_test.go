package snapshot_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"reflect"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

func FuzzDecodeTree(f *testing.F) {
	h := repository.Hash([]byte("x"))
	seed := snapshot.Tree{Nodes: []snapshot.Node{
		{Name: "access.log", Type: snapshot.TypeFile, Mode: 0o644, Size: 10, MtimeNS: -5, Content: []repository.ID{h}, Hash: &h, TailRuns: 2},
		{Name: "certs", Type: snapshot.TypeDir, Mode: 0o755 | 1<<31, Subtree: &h, Digest: &h},
		{Name: "data", Type: snapshot.TypeDir, Mode: 0o755 | 1<<31, Subtree: &h},
		{Name: "..data", Type: snapshot.TypeSymlink, Target: "..2026_11_22"},
	}}
	b, _ := seed.Encode()
	f.Add(b)
	empty, _ := (&snapshot.Tree{}).Encode()
	f.Add(empty)
	bad, _ := (&snapshot.Tree{Nodes: []snapshot.Node{{Name: "..", Type: snapshot.TypeFile, Hash: &h}}}).Encode()
	f.Add(bad)
	f.Add([]byte(`{"nodes":[]}`)) // format version 1 was JSON
	f.Fuzz(func(t *testing.T, b []byte) {
		tree, err := snapshot.DecodeTree(b)
		if err != nil {
			if !errors.Is(err, repository.ErrFormat) {
				t.Fatalf("error is not ErrFormat: %v", err)
			}
			return
		}
		for i, n := range tree.Nodes {
			if snapshot.ValidName(n.Name) != nil {
				t.Fatalf("accepted name %q", n.Name)
			}
			if i > 0 && tree.Nodes[i-1].Name >= n.Name {
				t.Fatalf("accepted %q after %q", n.Name, tree.Nodes[i-1].Name)
			}
		}
		again, err := tree.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := snapshot.DecodeTree(again)
		if err != nil {
			t.Fatalf("re-encoded tree does not decode: %v", err)
		}
		if !reflect.DeepEqual(back, tree) {
			t.Fatalf("round trip changed the tree:\n%+v\n%+v", tree, back)
		}
		// One tree, one encoding: what decodes re-encodes to the same bytes.
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical encoding:\n% x\nre-encodes as\n% x", b, again)
		}
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	s := snapshot.Snapshot{Version: 1, Seq: 3, Time: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), Policy: "p", Source: "/v", Tree: repository.Hash(nil)}
	b, _ := json.Marshal(s)
	f.Add(b)
	s.Root = &snapshot.RootMeta{Mode: fs.ModeDir | fs.ModeSetgid | 0o775, GID: 2000, MtimeNS: 1}
	b, _ = json.Marshal(s)
	f.Add(b)
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sn, err := snapshot.Decode(b)
		if err != nil {
			if !errors.Is(err, repository.ErrFormat) {
				t.Fatalf("error is not ErrFormat: %v", err)
			}
			return
		}
		if sn.Policy == "" || sn.Tree.IsNull() || sn.Version != 1 {
			t.Fatalf("accepted invalid snapshot %+v", sn)
		}
		if sn.Root != nil && (!sn.Root.Mode.IsDir() || sn.Root.Mode.Type() != fs.ModeDir) {
			t.Fatalf("accepted root mode %v", sn.Root.Mode)
		}
	})
}
