package prune_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/prune"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// retentionRepo is a repository with real backups of two sources, by two
// hosts, under two policies.
type retentionRepo struct {
	t     *testing.T
	repo  *repository.Repo
	clock *repotest.Clock
	src   map[string]string
}

func newRetentionRepo(t *testing.T) *retentionRepo {
	r, _ := repotest.NewMem(t)
	rr := &retentionRepo{t: t, repo: r, clock: repotest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)), src: map[string]string{}}
	for _, name := range []string{"a", "b"} {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		rr.src[name] = dir
	}
	return rr
}

// backup takes a snapshot of source name as policy on host, an hour after
// the previous one, with new content so that every backup stores data.
func (rr *retentionRepo) backup(policy, host, name string) *snapshot.Snapshot {
	rr.t.Helper()
	rr.clock.Add(time.Hour)
	f := filepath.Join(rr.src[name], "data")
	if err := os.WriteFile(f, []byte(policy+host+rr.clock.Now().String()), 0o644); err != nil {
		rr.t.Fatal(err)
	}
	repo, err := rr.repo.Fresh()
	if err != nil {
		rr.t.Fatal(err)
	}
	a, err := archiver.New(repo, archiver.Options{Policy: policy, Hostname: host, Now: rr.clock.Now})
	if err != nil {
		rr.t.Fatal(err)
	}
	sn, err := a.Backup(rr.t.Context(), rr.src[name])
	if err != nil {
		rr.t.Fatal(err)
	}
	return sn
}

func (rr *retentionRepo) forget(opt prune.RetentionOptions) *prune.ForgetResult {
	rr.t.Helper()
	repo, err := rr.repo.Fresh()
	if err != nil {
		rr.t.Fatal(err)
	}
	lock, err := repo.Lock(rr.t.Context(), repository.LockOptions{Exclusive: true, Command: "forget"})
	if err != nil {
		rr.t.Fatal(err)
	}
	defer lock.Unlock()
	res, err := prune.Forget(lock.Context(), repo, opt)
	if err != nil {
		rr.t.Fatal(err)
	}
	return res
}

func (rr *retentionRepo) ids() []string {
	rr.t.Helper()
	snaps, bad, err := snapshot.LoadAll(rr.t.Context(), rr.repo)
	if err != nil || len(bad) > 0 {
		rr.t.Fatal(err, bad)
	}
	return idsOf(snaps)
}

func idsOf(snaps []*snapshot.Snapshot) []string {
	var out []string
	for _, s := range snaps {
		out = append(out, s.ID.Str())
	}
	slices.Sort(out)
	return out
}

func TestForgetGroupsByPolicyHostAndSource(t *testing.T) {
	rr := newRetentionRepo(t)
	var newest []*snapshot.Snapshot
	for _, g := range []struct {
		policy, host, src string
		n                 int
	}{
		{"mesh", "node-1", "a", 3},
		{"mesh", "node-2", "a", 2},
		{"consul", "node-1", "a", 2},
		{"mesh", "node-1", "b", 1},
	} {
		var last *snapshot.Snapshot
		for range g.n {
			last = rr.backup(g.policy, g.host, g.src)
		}
		newest = append(newest, last)
	}
	all := rr.ids()
	if len(all) != 8 {
		t.Fatalf("%d snapshots, want 8", len(all))
	}

	dry := rr.forget(prune.RetentionOptions{Keep: snapshot.KeepPolicy{Last: 1}, DryRun: true})
	if got := rr.ids(); !slices.Equal(got, all) {
		t.Fatalf("dry run removed snapshots: %v", got)
	}
	if len(dry.Groups) != 4 || dry.Removed() != 4 || dry.Plan != nil {
		t.Fatalf("dry run: %d groups, %d to remove, plan %v; want 4, 4, none", len(dry.Groups), dry.Removed(), dry.Plan)
	}
	for _, g := range dry.Groups {
		i := slices.IndexFunc(newest, func(s *snapshot.Snapshot) bool {
			return s.Policy == g.Policy && s.Hostname == g.Hostname && s.Source == g.Source
		})
		if i < 0 || len(g.Keep) != 1 || g.Keep[0].ID != newest[i].ID {
			t.Errorf("group %s/%s/%s keeps %v, want only its newest", g.Policy, g.Hostname, g.Source, idsOf(g.Keep))
		}
	}

	// Selecting one host's snapshots of one policy and source touches no other.
	one := rr.forget(prune.RetentionOptions{Keep: snapshot.KeepPolicy{Last: 1},
		Select: func(s *snapshot.Snapshot) bool {
			return s.Policy == "mesh" && s.Hostname == "node-1" && s.Source == rr.src["a"]
		}})
	if len(one.Groups) != 1 || one.Removed() != 2 || len(rr.ids()) != 6 {
		t.Fatalf("selected forget: %d groups, %d removed, %d left; want 1, 2, 6", len(one.Groups), one.Removed(), len(rr.ids()))
	}

	// Everything, then prune: what is left is each group's newest, and the
	// forgotten snapshots' data is marked for deletion.
	res := rr.forget(prune.RetentionOptions{Keep: snapshot.KeepPolicy{Last: 1}, Prune: true, PruneOptions: prune.Options{Grace: time.Hour, Now: rr.clock.Now}})
	if got, want := rr.ids(), idsOf(newest); !slices.Equal(got, want) {
		t.Fatalf("after forget: %v, want each group's newest %v", got, want)
	}
	if res.Plan == nil || len(res.Plan.Mark) == 0 {
		t.Fatalf("prune after forget marked nothing: %+v", res.Plan)
	}
}

// Scenario 12: a clock that jumped back makes the newest snapshot look the
// oldest; retention keeps it anyway, by sequence number.
func TestForgetKeepsNewestAfterClockJump(t *testing.T) {
	rr := newRetentionRepo(t)
	for range 3 {
		rr.backup("mesh", "node-1", "a")
	}
	rr.clock.Add(-72 * time.Hour)
	newest := rr.backup("mesh", "node-1", "a")
	for _, keep := range []snapshot.KeepPolicy{{Last: 1}, {Daily: 1}, {Hourly: 1}} {
		res := rr.forget(prune.RetentionOptions{Keep: keep, DryRun: true})
		if len(res.Groups) != 1 || !slices.ContainsFunc(res.Groups[0].Keep, func(s *snapshot.Snapshot) bool { return s.ID == newest.ID }) {
			t.Fatalf("keep %+v: the newest snapshot (seq %d, dated back) is not kept: %+v", keep, newest.Seq, res.Groups)
		}
	}
	rr.forget(prune.RetentionOptions{Keep: snapshot.KeepPolicy{Last: 1}})
	if got := rr.ids(); !slices.Equal(got, []string{newest.ID.Str()}) {
		t.Fatalf("after forget: %v, want only %s", got, newest.ID.Str())
	}
}

func TestForgetRefusesEmptyPolicy(t *testing.T) {
	rr := newRetentionRepo(t)
	rr.backup("mesh", "node-1", "a")
	if _, err := prune.Forget(t.Context(), rr.repo, prune.RetentionOptions{}); err == nil {
		t.Fatal("forget with no keep rule succeeded")
	}
	if len(rr.ids()) != 1 {
		t.Fatal("forget with no keep rule removed a snapshot")
	}
}

// Scenario 34: suspect snapshots (a source on another device, an empty
// source accepted) never push out the newest snapshot that is not.
func TestForgetKeepsNewestHealthySnapshot(t *testing.T) {
	rr := newRetentionRepo(t)
	var healthy *snapshot.Snapshot
	for i := range 5 {
		sn := &snapshot.Snapshot{Seq: uint64(i + 1), Time: rr.clock.Now().Add(time.Duration(i) * time.Hour),
			Policy: "mesh", Hostname: "node-1", Source: "/vol", Tree: repository.Hash(nil)}
		if i >= 3 {
			sn.Suspect = "the source is on device 0:27, its previous snapshot was on 254:0"
		}
		if err := snapshot.Save(t.Context(), rr.repo, sn); err != nil {
			t.Fatal(err)
		}
		if sn.Suspect == "" {
			healthy = sn
		}
	}
	res := rr.forget(prune.RetentionOptions{Keep: snapshot.KeepPolicy{Last: 1}})
	kept := idsOf(res.Groups[0].Keep)
	if len(kept) != 2 || !slices.Contains(kept, healthy.ID.Str()) {
		t.Fatalf("kept %v, want the newest and the newest healthy %s", kept, healthy.ID.Str())
	}
	if got := rr.ids(); len(got) != 2 {
		t.Fatalf("%d snapshots left, want 2", len(got))
	}
}
