package snapshot_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

func FuzzDecodeTree(f *testing.F) {
	h := repository.Hash([]byte("x"))
	seed := snapshot.Tree{Nodes: []snapshot.Node{
		{Name: "access.log", Type: snapshot.TypeFile, Mode: 0o644, Size: 10, Content: []repository.ID{h}, Hash: &h},
		{Name: "certs", Type: snapshot.TypeDir, Mode: 0o755 | 1<<31, Subtree: &h},
		{Name: "..data", Type: snapshot.TypeSymlink, Target: "..2026_11_22"},
	}}
	b, _ := seed.Encode()
	f.Add(b)
	f.Add([]byte(`{"nodes":[{"name":"..","type":"file"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tree, err := snapshot.DecodeTree(b)
		if err != nil {
			return
		}
		for _, n := range tree.Nodes {
			if snapshot.ValidName(n.Name) != nil {
				t.Fatalf("accepted name %q", n.Name)
			}
		}
		again, err := tree.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := snapshot.DecodeTree(again); err != nil {
			t.Fatalf("re-encoded tree does not decode: %v", err)
		}
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	s := snapshot.Snapshot{Version: 1, Seq: 3, Time: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), Policy: "p", Source: "/v", Tree: repository.Hash(nil)}
	b, _ := json.Marshal(s)
	f.Add(b)
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sn, err := snapshot.Decode(b)
		if err != nil {
			return
		}
		if sn.Policy == "" || sn.Tree.IsNull() || sn.Version != 1 {
			t.Fatalf("accepted invalid snapshot %+v", sn)
		}
	})
}
