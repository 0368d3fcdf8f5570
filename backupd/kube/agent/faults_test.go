package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshbackup/backupd/backupd/checker"
	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/kube/agent"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/restorer"
	"github.com/meshbackup/backupd/backupd/results"
	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/bench/workload"
)

// chunkGate holds, once armed, every file read of the backups at their
// next chunk (the after-chunk fault point, on the archiver's workers) until
// it is released: a run that is really in flight, mid-walk, its files not
// yet all read. held is closed at the first.
type chunkGate struct {
	armed    atomic.Bool
	held     chan struct{}
	heldOnce sync.Once
	release  chan struct{}
	once     sync.Once
}

func newChunkGate(t *testing.T) *chunkGate {
	g := &chunkGate{held: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(g.open) // never leave a run held
	return g
}

func (g *chunkGate) hook(int) {
	if g.armed.Load() {
		g.heldOnce.Do(func() { close(g.held) })
		<-g.release
	}
}

func (g *chunkGate) open() { g.once.Do(func() { close(g.release) }) }

// withFaults arms the daemon's fault points (docs/DESIGN.md §8).
func withFaults(s *faultpoint.Set) func(*agent.Options) {
	return func(o *agent.Options) { o.Daemon.RepoOptions = repository.Options{Faults: s} }
}

// fileStates records every state the files of a volume were left in by the
// test's writers: the oracle of what a snapshot may hold.
type fileStates struct {
	mu sync.Mutex
	// by path (slash-separated, relative to the volume), content by hash.
	states map[string]map[string][]byte
	n      int
}

func newFileStates() *fileStates { return &fileStates{states: map[string]map[string][]byte{}} }

// record adds the current state of every file below root.
func (s *fileStates) record(t *testing.T, root string) {
	t.Helper()
	m, err := workload.Manifest(root)
	if err != nil {
		t.Errorf("manifest of %s: %v", root, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	for p, e := range m {
		if e.Type != "file" {
			continue
		}
		if s.states[p] == nil {
			s.states[p] = map[string][]byte{}
		}
		if _, ok := s.states[p][e.Hash]; ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
		if err != nil {
			continue // gone since the manifest: its hash was a state all the same
		}
		s.states[p][e.Hash] = b
	}
}

// inPlace reports whether the workload writes the file at p in place
// (appends, truncation, rewrites or new files written without a rename):
// a reader may see any prefix of one of its states, and an access log's
// content moves to access.log.1 on rotation. Every other file is replaced
// by a rename and must be one of its states exactly.
func inPlace(p string) bool {
	b := path.Base(p)
	return strings.HasPrefix(b, "access.log") || b == "bootstrap.json" || strings.HasSuffix(b, ".pem") ||
		strings.Contains(p, "/tap/") || strings.Contains(p, "/serviceaccount/..")
}

// tempOf returns the file that p, the workload's temporary file of a
// replacement by rename (".stats.txt.tmp"), is replacing.
func tempOf(p string) (string, bool) {
	b := path.Base(p)
	if strings.HasPrefix(b, ".") && strings.HasSuffix(b, ".tmp") && len(b) > len("..tmp") {
		return path.Join(path.Dir(p), b[1:len(b)-len(".tmp")]), true
	}
	return "", false
}

// check compares every file of a restored snapshot with the recorded
// states; it returns one line per file that is none of them.
func (s *fileStates) check(restored map[string]workload.Entry, target string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var bad []string
	for p, e := range restored {
		if e.Type != "file" {
			continue
		}
		if _, ok := s.states[p][e.Hash]; ok {
			continue
		}
		of, isTemp := tempOf(p)
		if isTemp || inPlace(p) {
			if !isTemp {
				of = p
			}
			got, err := os.ReadFile(filepath.Join(target, filepath.FromSlash(p)))
			if err == nil && s.prefixOfAny(of, got) {
				continue
			}
		}
		bad = append(bad, fmt.Sprintf("%s (%d bytes, %.12s) is none of the %d states it was written in", p, e.Size, e.Hash, len(s.states[p])))
	}
	slices.Sort(bad)
	return bad
}

func (s *fileStates) prefixOfAny(p string, got []byte) bool {
	cands := []string{p}
	if b := path.Base(p); strings.HasPrefix(b, "access.log") {
		// A log rotated while read: its content was the live log's.
		for q := range s.states {
			if path.Dir(q) == path.Dir(p) && strings.HasPrefix(path.Base(q), "access.log") {
				cands = append(cands, q)
			}
		}
	}
	for _, q := range cands {
		for _, b := range s.states[q] {
			if bytes.HasPrefix(b, got) {
				return true
			}
		}
	}
	return false
}

// restoreSnapshot restores sn into a new directory and returns it with its
// manifest.
func restoreSnapshot(t *testing.T, ctx context.Context, repo repoView, sn *snapshot.Snapshot) (string, map[string]workload.Entry) {
	t.Helper()
	r := repo.open(ctx)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "restore")
	res, err := restorer.New(r, restorer.Options{}).Restore(ctx, sn, target)
	if err != nil {
		t.Fatalf("restore snapshot %s: %v", sn.ID.Str(), err)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("restore snapshot %s: %v", sn.ID.Str(), err)
	}
	m, err := workload.Manifest(target)
	if err != nil {
		t.Fatal(err)
	}
	return target, m
}

// checkRepository reads back every pack of the repository.
func checkRepository(t *testing.T, ctx context.Context, repo repoView) {
	t.Helper()
	rep, err := checker.Check(ctx, repo.open(ctx), checker.Options{ReadData: true, NoRecord: true})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !rep.OK() {
		t.Errorf("check --read-data found problems: %+v", rep.Problems)
	}
}

// eventsOn returns the Events of testNS on the object of kind and name,
// "type/reason: message" each.
func (c *testCluster) eventsOn(t *testing.T, ctx context.Context, kind, name string) []string {
	t.Helper()
	l, err := c.env.Clientset.CoreV1().Events(testNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range l.Items {
		if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name {
			out = append(out, e.Type+"/"+e.Reason+": "+e.Message)
		}
	}
	return out
}

func hasLine(lines []string, parts ...string) bool {
	for _, l := range lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func agentRunning(ra *runningAgent) error {
	select {
	case err := <-ra.done:
		ra.done <- err
		return fmt.Errorf("the agent stopped: %v", err)
	default:
	}
	if d := ra.a.Daemon(); d == nil || !d.Ready() {
		return fmt.Errorf("the agent's daemon is not ready")
	}
	return nil
}

const faultPolicy = `
apiVersion: backupd.meshbackup.io/v1alpha1
kind: BackupPolicy
metadata: {name: mesh, namespace: shop}
spec:
  repository: shared
  meshDefault: true
  schedule: "@every 2s"
  rpo: 1m
  retention: {keepLast: 3}
  appendOnly: ["access.log"]
  drill: {enabled: false}
  verify: {schedule: "@every 1h"}
`

// TestPodDeletedMidBackup is docs/DESIGN.md §8 scenario "a pod deleted
// mid-backup", through the real API: while the agent's backup of a pod's
// PVC is in flight (held at the after-chunk fault point), the pod is
// deleted and the kubelet stand-in removes its volume's mount directory.
func TestPodDeletedMidBackup(t *testing.T) {
	c := startCluster(t, faultPolicy)
	env, repo, ctx := c.env, c.repo, t.Context()
	ka := newKubeletStandIn(t, ctx, env.Clientset, "node-a")
	ka.provision(ctx, testNS, "doomed-data", nil)
	ka.provision(ctx, testNS, "later-data", nil)
	dirs := ka.runPod(ctx, meshPod("doomed-0", istio, "doomed-data"))
	vol, wl := dirs["data"], volumeOptions("doomed-0", 0)
	states := newFileStates()
	states.record(t, vol)
	initial, err := workload.Manifest(vol)
	if err != nil {
		t.Fatal(err)
	}

	gate := newChunkGate(t)
	ag := startAgent(t, env, ka, t.TempDir(), withFaults(faultpoint.NewHook(faultpoint.AfterChunk, gate.hook)))
	const pol = "shop_doomed-data"
	eventually(t, "a first snapshot of the volume", 60*time.Second, func() (bool, string) {
		return len(repo.snapshots(ctx)[pol]) > 0, "none yet"
	})
	first := repo.snapshots(ctx)[pol][0]
	eventually(t, "the volume in the policy's status", 20*time.Second, func() (bool, string) {
		for _, v := range getPolicy(t, ctx, env, "mesh").Status.Volumes {
			if v.PersistentVolumeClaim == "doomed-data" && v.LastSnapshotID != "" {
				return true, ""
			}
		}
		return false, "not listed with a snapshot"
	})

	// New content, so the next backup reads chunks; it is held at its first.
	if err := workload.Mutate(vol, wl, 3); err != nil {
		t.Fatal(err)
	}
	states.record(t, vol)
	mutated, err := workload.Manifest(vol)
	if err != nil {
		t.Fatal(err)
	}
	before := len(ag.rec.records(pol, results.Backup))
	gate.armed.Store(true)
	select {
	case <-gate.held:
	case <-time.After(30 * time.Second):
		t.Fatal("no backup read a chunk within 30s")
	}
	var running bool
	for _, s := range ag.a.Daemon().Status() {
		running = running || s.Policy == pol && s.Running != nil && s.Running.Kind == results.Backup
	}
	if !running {
		t.Fatalf("the held backup is not in the daemon's status as running")
	}

	// The pod goes, its volume is unmounted, while the backup reads it.
	ka.deletePod(ctx, testNS, "doomed-0")
	eventually(t, "the deleted pod's volume leaves the schedule while its backup runs", 30*time.Second, func() (bool, string) {
		n := policyNames(ag.a.Volumes())
		return !slices.Contains(n, pol), fmt.Sprint(n)
	})
	gate.armed.Store(false)
	gate.open()
	var last results.Record
	eventually(t, "the held backup finishes", 60*time.Second, func() (bool, string) {
		recs := ag.rec.records(pol, results.Backup)
		if len(recs) <= before {
			return false, "still running"
		}
		last = recs[before]
		return true, ""
	})
	t.Logf("the held backup: outcome %s, reason %q, error %q, snapshot %q, files new %d changed %d unchanged %d skipped %d",
		last.Outcome, last.Reason, last.Error, last.Snapshot, last.FilesNew, last.FilesChanged, last.FilesUnchanged, last.FilesSkipped)
	switch last.Outcome {
	case results.Success, results.Partial:
		// A snapshot taken as the volume was unmounted must not pass for
		// the volume's content: it would lack the files not yet read.
		var sn *snapshot.Snapshot
		for _, s := range repo.snapshots(ctx)[pol] {
			if s.ID.String() == last.Snapshot {
				sn = s
			}
		}
		if sn == nil {
			t.Fatalf("a backup recorded as %s without its snapshot %q", last.Outcome, last.Snapshot)
		}
		_, m := restoreSnapshot(t, ctx, repo, sn)
		var lost []string
		for p, e := range mutated {
			if _, ok := m[p]; !ok && e.Type != "socket" {
				lost = append(lost, p)
			}
		}
		if len(lost) > 0 {
			slices.Sort(lost)
			t.Errorf("the backup held while the pod was deleted saved snapshot %s as a success without %d of the volume's files: %v",
				sn.ID.Str(), len(lost), lost[:min(len(lost), 10)])
		}
	case results.Failure:
		if !slices.Contains(results.Reasons, last.Reason) || last.Error == "" {
			t.Errorf("a failed backup without a clear reason: reason %q, error %q", last.Reason, last.Error)
		}
		if last.Snapshot != "" {
			t.Errorf("a failed backup left snapshot %s", last.Snapshot)
		}
	default:
		t.Errorf("backup outcome %q", last.Outcome)
	}
	if err := agentRunning(ag); err != nil {
		t.Fatal(err)
	}
	// Its series go with it, the held run's counts too (no series of
	// every pod that ever ran on the node).
	if m := seriesWith(t, ag.reg, "policy", pol); len(m) > 0 {
		t.Errorf("the agent still exports series of the deleted pod's volume: %v", m)
	}

	// The volume leaves the status and the schedule; its snapshots stay,
	// through the leader's retention passes.
	eventually(t, "the deleted pod's volume leaves the status", 20*time.Second, func() (bool, string) {
		for _, v := range getPolicy(t, ctx, env, "mesh").Status.Volumes {
			if v.PersistentVolumeClaim == "doomed-data" {
				return false, "doomed-data still listed"
			}
		}
		return true, ""
	})
	kept := repo.snapshots(ctx)[pol]
	retained := ag.a.Stats.Retained.Load()
	// The agent is up and schedules new volumes: a new pod is backed up.
	ka.runPod(ctx, meshPod("later-0", istio, "later-data"))
	eventually(t, "a new pod's volume is backed up after the deletion", 60*time.Second, func() (bool, string) {
		return len(repo.snapshots(ctx)["shop_later-data"]) > 0, fmt.Sprint(policyNames(ag.a.Volumes()))
	})
	eventually(t, "a retention pass after the deletion", 30*time.Second, func() (bool, string) {
		return ag.a.Stats.Retained.Load() > retained, "none yet"
	})
	now := repo.snapshots(ctx)[pol]
	if len(now) != len(kept) || len(kept) == 0 {
		t.Errorf("snapshots of the deleted pod's PVC: %d when it left the schedule, %d later: want them kept and no new ones", len(kept), len(now))
	}
	if m := seriesWith(t, ag.reg, "policy", pol); len(m) > 0 {
		t.Errorf("after more runs, the agent exports series of the deleted pod's volume again: %v", m)
	}
	if n := len(ag.rec.records(pol, results.Backup)); n != before+1 {
		t.Errorf("%d backups of the deleted pod's volume after the held one, want none", n-before-1)
	}

	// Every snapshot holds only states its files had; the first restores
	// byte-exact.
	for _, sn := range now {
		target, m := restoreSnapshot(t, ctx, repo, sn)
		if bad := states.check(m, target); len(bad) > 0 {
			t.Errorf("snapshot %s: %v", sn.ID.Str(), bad[:min(len(bad), 10)])
		}
		if d := workload.Diff(initial, m, true); sn.ID == first.ID && len(d) > 0 {
			t.Errorf("the snapshot from before the deletion does not restore byte-exact: %v", d[:min(len(d), 10)])
		}
	}

	// Events say what happened: the volume left the node's schedule, and a
	// failed run says its pod was deleted.
	eventually(t, "Events of the deleted pod's volume", 20*time.Second, func() (bool, string) {
		pv := c.eventsOn(t, ctx, "BackupPolicy", "mesh")
		pvc := c.eventsOn(t, ctx, "PersistentVolumeClaim", "doomed-data")
		ok := hasLine(pv, "Normal/VolumeReleased", "pvc/doomed-data", "node-a") && hasLine(pvc, "Normal/VolumeReleased", "node-a")
		if last.Outcome == results.Failure {
			ok = ok && hasLine(pv, "BackupFailed", "deleted") && hasLine(pvc, "BackupFailed", "deleted")
		}
		return ok, fmt.Sprintf("policy %q, PVC %q", pv, pvc)
	})
	stopAt := time.Now()
	ag.stop()
	t.Logf("agent stopped in %s", time.Since(stopAt))
	checkRepository(t, ctx, repo)
	t.Logf("checked in %s", time.Since(stopAt))
}

// TestProxyCrashLoopDuringBackups is docs/DESIGN.md §8 scenario 10 at the
// agent's level: a mesh pod's proxy container crash-loops while the agent
// backs its volume up. At chunks the backups read (the after-chunk fault
// point), the proxy crashes and restarts (workload.Crash: access.log
// truncated, PEMs reissued and bootstrap.json rewritten in place, stats
// restarted) and runs a minute (workload.Mutate: log appends and
// rotations, files replaced by rename, tap traces dropped); every state
// the files are left in is recorded as it is written.
func TestProxyCrashLoopDuringBackups(t *testing.T) {
	c := startCluster(t, `
apiVersion: backupd.meshbackup.io/v1alpha1
kind: BackupPolicy
metadata: {name: mesh, namespace: shop}
spec:
  repository: shared
  meshDefault: true
  schedule: "@every 2s"
  rpo: 1m
  retention: {keepLast: 100}
  appendOnly: ["access.log"]
  drill: {schedule: "@every 1h"}
  verify: {schedule: "@every 1h"}
`)
	env, repo, ctx := c.env, c.repo, t.Context()
	ka := newKubeletStandIn(t, ctx, env.Clientset, "node-a")
	wl := wlOpt
	wl.Proxies, wl.LogRotateBytes = 2, 4<<10 // rotations at most steps
	ka.wl = func(string, int) workload.Options { return wl }
	ka.provision(ctx, testNS, "web-data", nil)
	vol := ka.runPod(ctx, meshPod("web-0", istio, "web-data"))["data"]
	states := newFileStates()
	states.record(t, vol)
	initial, err := workload.Manifest(vol)
	if err != nil {
		t.Fatal(err)
	}

	var (
		crashing atomic.Bool
		mu       sync.Mutex
		crashes  int
		lastAt   time.Time
	)
	proxiesOnly := workload.Activity{Server: func(int) bool { return false }}
	hook := func(int) {
		if !crashing.Load() {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if time.Since(lastAt) < 150*time.Millisecond {
			return
		}
		lastAt = time.Now()
		if err := workload.Crash(vol, wl, crashes%wl.Proxies); err != nil {
			t.Errorf("crash: %v", err)
			return
		}
		crashes++
		states.record(t, vol)
		if err := workload.MutateSome(vol, wl, 1, proxiesOnly); err != nil {
			t.Errorf("mutate: %v", err)
			return
		}
		states.record(t, vol)
	}
	ag := startAgent(t, env, ka, t.TempDir(), withFaults(faultpoint.NewHook(faultpoint.AfterChunk, hook)))
	const pol = "shop_web-data"
	eventually(t, "a first snapshot of the volume", 60*time.Second, func() (bool, string) {
		return len(repo.snapshots(ctx)[pol]) > 0, "none yet"
	})
	first := repo.snapshots(ctx)[pol][0]

	// The crash loop: started by a change the next backup reads.
	crashing.Store(true)
	mu.Lock()
	if err := workload.MutateSome(vol, wl, 1, proxiesOnly); err != nil {
		t.Fatal(err)
	}
	states.record(t, vol)
	mu.Unlock()
	startRuns := len(ag.rec.records(pol, results.Backup))
	eventually(t, "backups during a crash loop", 90*time.Second, func() (bool, string) {
		mu.Lock()
		n := crashes
		mu.Unlock()
		runs := len(ag.rec.records(pol, results.Backup)) - startRuns
		return n >= 8 && runs >= 5, fmt.Sprintf("%d crashes, %d backups", n, runs)
	})
	crashing.Store(false)
	mu.Lock() // held: no crash is under way
	t.Logf("%d proxy crashes injected", crashes)
	mu.Unlock()
	if err := agentRunning(ag); err != nil {
		t.Fatal(err)
	}

	// Once the proxy is quiet, the next snapshot is the volume, exactly.
	quiet := time.Now()
	var latest *snapshot.Snapshot
	eventually(t, "a snapshot after the crash loop", 30*time.Second, func() (bool, string) {
		for _, s := range repo.snapshots(ctx)[pol] {
			if s.Time.After(quiet) {
				latest = s
				return true, ""
			}
		}
		return false, "none yet"
	})
	recs := ag.rec.records(pol, results.Backup)
	for _, r := range recs {
		// Files that vanish (rotated away, traces dropped) and files that
		// change under the backup fail no run.
		if r.Outcome != results.Success {
			t.Errorf("backup %s during the crash loop: %s (%s): %s", r.RunID, r.Outcome, r.Reason, r.Error)
		}
	}
	if err := agentRunning(ag); err != nil {
		t.Fatal(err)
	}
	want, err := workload.Manifest(vol)
	if err != nil {
		t.Fatal(err)
	}
	snaps := repo.snapshots(ctx)[pol]
	t.Logf("%d crashes, %d backups, %d snapshots", crashes, len(recs), len(snaps))
	if len(snaps) < 7 {
		t.Errorf("%d snapshots, want one of each backup (at least 7)", len(snaps))
	}
	for _, sn := range snaps {
		target, m := restoreSnapshot(t, ctx, repo, sn)
		if bad := states.check(m, target); len(bad) > 0 {
			t.Errorf("snapshot %s (seq %d): %d files are none of their states: %v", sn.ID.Str(), sn.Seq, len(bad), bad[:min(len(bad), 10)])
		}
		switch sn.ID {
		case first.ID:
			if d := workload.Diff(initial, m, true); len(d) > 0 {
				t.Errorf("the snapshot from before the crash loop does not restore byte-exact: %v", d[:min(len(d), 10)])
			}
		case latest.ID:
			if d := workload.Diff(want, m, true); len(d) > 0 {
				t.Errorf("the snapshot after the crash loop differs from the volume: %v", d[:min(len(d), 10)])
			}
		}
	}

	// Nothing failed, so nothing is reported as failed.
	eventually(t, "the status after the crash loop", 20*time.Second, func() (bool, string) {
		for _, v := range getPolicy(t, ctx, env, "mesh").Status.Volumes {
			if v.PersistentVolumeClaim == "web-data" {
				return v.LastError == "" && v.LastSnapshotID != "" && v.LastSnapshotID != first.ID.String(),
					fmt.Sprintf("lastError %q, lastSnapshotID %q", v.LastError, v.LastSnapshotID)
			}
		}
		return false, "web-data not listed"
	})
	if ev := c.eventsOn(t, ctx, "Pod", "web-0"); hasLine(ev, "Warning/") {
		t.Errorf("Warning events on the crash-looping pod: %v", ev)
	}
	ag.stop()
	checkRepository(t, ctx, repo)
}
