package archiver

import (
	"reflect"
	"testing"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// sameNode decides whether a directory's parent tree is reused: a
// difference in any field that is encoded must make it false.
func TestSameNodeSeesEveryField(t *testing.T) {
	h1, h2 := repository.Hash([]byte("1")), repository.Hash([]byte("2"))
	base := func() snapshot.Node {
		h, s, d := h1, h1, h2
		return snapshot.Node{Name: "f", Type: snapshot.TypeFile, Mode: 0o644, UID: 1, GID: 2, Size: 3, MtimeNS: 4,
			CtimeNS: 5, Inode: 6, Target: "t", Content: []repository.ID{h1}, Hash: &h, Subtree: &s, Digest: &d, TailRuns: 7}
	}
	change := map[string]func(n *snapshot.Node){
		"Name": func(n *snapshot.Node) { n.Name = "g" }, "Type": func(n *snapshot.Node) { n.Type = snapshot.TypeSymlink },
		"Mode": func(n *snapshot.Node) { n.Mode = 0o600 }, "UID": func(n *snapshot.Node) { n.UID = 9 },
		"GID": func(n *snapshot.Node) { n.GID = 9 }, "Size": func(n *snapshot.Node) { n.Size = 9 },
		"MtimeNS": func(n *snapshot.Node) { n.MtimeNS = 9 }, "CtimeNS": func(n *snapshot.Node) { n.CtimeNS = 9 },
		"Inode": func(n *snapshot.Node) { n.Inode = 9 }, "Target": func(n *snapshot.Node) { n.Target = "u" },
		"Content": func(n *snapshot.Node) { n.Content = []repository.ID{h2} },
		"Hash":    func(n *snapshot.Node) { *n.Hash = h2 }, "Subtree": func(n *snapshot.Node) { n.Subtree = nil },
		"TailRuns": func(n *snapshot.Node) { n.TailRuns = 8 },
		"Digest":   func(n *snapshot.Node) { n.Digest = nil },
	}
	// A new field of Node must be added here (and to sameNode).
	typ := reflect.TypeFor[snapshot.Node]()
	for i := range typ.NumField() {
		if _, ok := change[typ.Field(i).Name]; !ok {
			t.Errorf("field %s of snapshot.Node is not covered", typ.Field(i).Name)
		}
	}
	if x, y := base(), base(); !sameNode(x, y) {
		t.Fatal("equal nodes (with distinct pointers) differ")
	}
	for field, f := range change {
		t.Run(field, func(t *testing.T) {
			x, y := base(), base()
			f(&y)
			if sameNode(x, y) || sameNode(y, x) {
				t.Fatalf("a change of %s is not seen", field)
			}
		})
	}
}
