package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/meshbackup/backupd/backupd/checker"
)

// The text report of a badly damaged repository stays readable: the first
// problems of each pack and affected files of each snapshot, then counts
// of the rest, and a line naming every damaged repository file once.
func TestCheckReportCapsAndNames(t *testing.T) {
	const pack = "483c0bc41a08b77b40a527b1c5549e8387dd83973e4c330a6f2987f41f715404"
	rep := &checker.Report{}
	rep.Problems = append(rep.Problems, checker.Problem{Kind: "corrupt-pack", Object: "data/" + pack, Message: "pack 483c0bc4 is corrupt"})
	for i := range 25 {
		rep.Problems = append(rep.Problems, checker.Problem{Kind: "corrupt-blob", Object: fmt.Sprintf("blob %02d", i), Pack: pack, Message: fmt.Sprintf("data blob %02d in pack 483c0bc4", i)})
	}
	rep.Problems = append(rep.Problems, checker.Problem{Kind: "bad-snapshot", Object: "snapshots/5d9e", Message: "cannot decrypt"})
	for i := range 30 {
		rep.Affected = append(rep.Affected, checker.Affected{Snapshot: "01c07212", Policy: "mesh", Path: fmt.Sprintf("/f%02d", i)})
	}
	rep.Affected = append(rep.Affected, checker.Affected{Snapshot: "02f070dc", Policy: "mesh", Path: "/only"})
	var out bytes.Buffer
	printCheckReport(&globalOptions{stdout: &out}, rep)
	text := out.String()
	count := func(prefix string) int {
		n := 0
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, prefix) {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		prefix string
		want   int
	}{
		{"error: corrupt-blob: data blob", checkListed},
		{"error: corrupt-blob: 15 more in pack " + pack, 1},
		{"error: corrupt-pack: ", 1},
		{"error: bad-snapshot: ", 1},
		{"affected: snapshot 01c07212 (policy mesh) file ", checkListed},
		{"affected: snapshot 01c07212 (policy mesh): 20 more files", 1},
		{"affected: snapshot 02f070dc (policy mesh) file /only", 1},
		{"damaged: data/" + pack + ", snapshots/5d9e", 1},
	} {
		if got := count(c.prefix); got != c.want {
			t.Errorf("%d lines starting %q, want %d\n%s", got, c.prefix, c.want, text)
		}
	}
}
