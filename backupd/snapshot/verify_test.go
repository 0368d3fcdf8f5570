package snapshot_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/meshbackup/backupd/backupd/snapshot"
)

// SameMetadata is the one "unchanged file" rule: a change of inode, size,
// mtime or ctime, or a node that is not a file, makes it false.
func TestSameMetadata(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := snapshot.FileMetaOf(fi)
	if !ok || m.Size != 3 || m.Inode == 0 || m.MtimeNS != fi.ModTime().UnixNano() || m.CtimeNS == 0 {
		t.Fatalf("snapshot.FileMetaOf = %+v, %v", m, ok)
	}
	n := snapshot.Node{Type: snapshot.TypeFile, Inode: m.Inode, Size: 3, MtimeNS: m.MtimeNS, CtimeNS: m.CtimeNS}
	if !snapshot.SameMetadata(n, m) {
		t.Fatal("same file not unchanged")
	}
	for name, change := range map[string]func(*snapshot.Node){
		"Type":    func(n *snapshot.Node) { n.Type = snapshot.TypeSymlink },
		"Inode":   func(n *snapshot.Node) { n.Inode++ },
		"Size":    func(n *snapshot.Node) { n.Size++ },
		"MtimeNS": func(n *snapshot.Node) { n.MtimeNS++ },
		"CtimeNS": func(n *snapshot.Node) { n.CtimeNS++ },
	} {
		c := n
		change(&c)
		if snapshot.SameMetadata(c, m) {
			t.Errorf("a changed %s is unchanged", name)
		}
	}
	dir, err := os.Stat(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snapshot.FileMetaOf(dir); ok {
		t.Error("snapshot.FileMetaOf of a directory is ok")
	}
}
