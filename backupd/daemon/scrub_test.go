package daemon

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// Scenario 8: the content of a source file changes while its metadata does
// not (bit rot under the file system). Scrub notices; a file whose metadata
// changed is left to the next backup.
func TestScrubFindsSilentChanges(t *testing.T) {
	repo, _ := repotest.NewMem(t)
	src := t.TempDir()
	p := filepath.Join(src, "raft.db")
	data := make([]byte, 300_000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := archiver.New(repo, archiver.Options{Policy: "p"})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := a.Backup(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := snapshot.LoadTree(t.Context(), repo, sn.Tree)
	if err != nil {
		t.Fatal(err)
	}
	node := tree.Nodes[0]
	root, err := os.OpenRoot(src)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var buf []byte
	same, err := scrubFile(t.Context(), repo, nil, root, "raft.db", node, &buf)
	if err != nil || same == nil || !*same {
		t.Fatalf("untouched file: same=%v err=%v", same, err)
	}
	// Flip a byte. The kernel moves ctime; the "bit rot" model keeps the
	// metadata, so make the recorded node carry the new metadata.
	data[150_000] ^= 0x01
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if same, _ := scrubFile(t.Context(), repo, nil, root, "raft.db", node, &buf); same != nil {
		t.Fatal("a file with changed metadata is the next backup's job, not scrub's")
	}
	fi, _ := os.Stat(p)
	st := fi.Sys().(*syscall.Stat_t)
	node.MtimeNS, node.CtimeNS, node.Inode = fi.ModTime().UnixNano(), st.Ctim.Sec*1e9+st.Ctim.Nsec, st.Ino
	same, err = scrubFile(t.Context(), repo, nil, root, "raft.db", node, &buf)
	if err != nil || same == nil || *same {
		t.Fatalf("silent change not found: same=%v err=%v", same, err)
	}
}
