package agent_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/results"
	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/bench/workload"
)

// TestPVCMovesBetweenNodes: a pod on node-a is deleted and a new pod with
// the same PVC is created on node-b, the stand-ins moving its file system
// (docs/DESIGN.md "Node agent", Policies). Both agents use one state
// directory path, as the chart makes every node's: the volume's source path
// is the same on both nodes.
func TestPVCMovesBetweenNodes(t *testing.T) {
	c := startCluster(t, `
apiVersion: backupd.meshbackup.io/v1alpha1
kind: BackupPolicy
metadata: {name: mesh, namespace: shop}
spec:
  repository: shared
  meshDefault: true
  schedule: "@every 2s"
  rpo: 1m
  retention: {keepLast: 3}
  drill: {enabled: false}
  verify: {schedule: "@every 1h"}
`)
	env, repo, ctx := c.env, c.repo, t.Context()
	ka := newKubeletStandIn(t, ctx, env.Clientset, "node-a")
	kb := newKubeletStandIn(t, ctx, env.Clientset, "node-b")
	wl := wlOpt
	wl.Scale = 0.02 // a few MiB: what an incremental backup leaves unread shows
	ka.wl = func(string, int) workload.Options { return wl }
	ka.provision(ctx, testNS, "moving-data", nil)
	vol := ka.runPod(ctx, meshPod("mover-0", istio, "moving-data"))["data"]
	want, err := workload.Manifest(vol)
	if err != nil {
		t.Fatal(err)
	}
	var size uint64
	for _, e := range want {
		size += uint64(e.Size)
	}

	state := t.TempDir()
	// node-a leads: it applies retention to node-b's volumes as well.
	agA := startAgent(t, env, ka, state)
	eventually(t, "node-a leads", 30*time.Second, func() (bool, string) { return agA.a.Leading(), "not yet" })
	agB := startAgent(t, env, kb, state)
	const pol = "shop_moving-data"
	host := cluster + "_" + pol
	// The backups (every 2 s on both nodes) hold shared locks most of the
	// time: retention gets in by waiting for them while new ones wait
	// behind it (repository.Options.ExclusiveLockWait).
	eventually(t, "node-a backs the PVC up, retention applied", time.Minute, func() (bool, string) {
		n := len(repo.snapshots(ctx)[pol])
		return n >= 3 && agA.a.Stats.Retained.Load() > 0, fmt.Sprintf("%d snapshots, %d retention passes", n, agA.a.Stats.Retained.Load())
	})
	if v, ok := gauge(t, agA.reg, "backupd_volume_info", map[string]string{"policy": pol, "node": "node-a", "pod": "mover-0"}); !ok || v != 1 {
		t.Fatalf("backupd_volume_info of the PVC on node-a: %v %v", v, ok)
	}

	// The move.
	kept := ka.deletePodKeeping(ctx, testNS, "mover-0", []string{"data"})
	eventually(t, "node-a stops scheduling the PVC", 30*time.Second, func() (bool, string) {
		n := policyNames(agA.a.Volumes())
		return !slices.Contains(n, pol), fmt.Sprint(n)
	})
	// Its last run may have been under way; none comes after.
	time.Sleep(time.Second)
	runsA := len(agA.rec.records(pol, results.Backup))
	fromA := map[string]bool{}
	var lastA *snapshot.Snapshot
	for _, s := range repo.snapshots(ctx)[pol] {
		fromA[s.ID.String()] = true
		if lastA == nil || s.Seq > lastA.Seq {
			lastA = s
		}
	}
	kb.runPodWith(ctx, meshPod("mover-1", istio, "moving-data"), map[string]string{"data": kept["data"]})

	// node-b's first backup of the PVC: same host name, parent from node-a,
	// little read and written.
	var firstB results.Record
	eventually(t, "node-b backs the PVC up", 60*time.Second, func() (bool, string) {
		for _, r := range agB.rec.records(pol, results.Backup) {
			if r.Outcome == results.Success {
				firstB = r
				return true, ""
			}
		}
		return false, fmt.Sprint(policyNames(agB.a.Volumes()))
	})
	var snB *snapshot.Snapshot
	for _, s := range repo.snapshots(ctx)[pol] {
		if s.ID.String() == firstB.Snapshot {
			snB = s
		}
	}
	if snB == nil {
		t.Fatalf("node-b's first snapshot %s not in the repository", firstB.Snapshot)
	}
	if snB.Hostname != host || snB.Hostname != lastA.Hostname {
		t.Errorf("host of node-b's snapshot %q, of node-a's %q: want both %q", snB.Hostname, lastA.Hostname, host)
	}
	if snB.Parent == nil || *snB.Parent != lastA.ID {
		t.Errorf("node-b's first snapshot has parent %v, want node-a's last snapshot %s", snB.Parent, lastA.ID.Str())
	}
	t.Logf("volume %d bytes; node-b's first backup read %d, wrote %d bytes; files new %d, changed %d, unchanged %d",
		size, firstB.BytesRead, firstB.BytesWritten, firstB.FilesNew, firstB.FilesChanged, firstB.FilesUnchanged)
	if firstB.BytesRead > size/10 || firstB.BytesWritten > size/10 || firstB.FilesUnchanged == 0 {
		t.Errorf("node-b's first backup read %d and wrote %d bytes of a %d-byte volume (%d files unchanged): not incremental",
			firstB.BytesRead, firstB.BytesWritten, size, firstB.FilesUnchanged)
	}
	_, m := restoreSnapshot(t, ctx, repo, snB)
	if d := workload.Diff(want, m, true); len(d) > 0 {
		t.Errorf("node-b's first snapshot differs from the volume: %v", d[:min(len(d), 10)])
	}

	// The status names node-b, once; node-a's series of the PVC are gone,
	// node-b's info series names the new pod.
	eventually(t, "the status shows the PVC on node-b", 20*time.Second, func() (bool, string) {
		var got []string
		for _, v := range getPolicy(t, ctx, env, "mesh").Status.Volumes {
			if v.PersistentVolumeClaim == "moving-data" {
				got = append(got, v.Node+"/"+v.Pod)
			}
		}
		return slices.Equal(got, []string{"node-b/mover-1"}), fmt.Sprint(got)
	})
	if m := seriesWith(t, agA.reg, "policy", pol); len(m) > 0 {
		t.Errorf("node-a still exports series of the moved PVC: %v", m)
	}
	if m := seriesWith(t, agA.reg, "persistentvolumeclaim", "moving-data"); len(m) > 0 {
		t.Errorf("node-a still exports series naming the moved PVC: %v", m)
	}
	if v, ok := gauge(t, agB.reg, "backupd_volume_info", map[string]string{"policy": pol, "node": "node-b", "pod": "mover-1"}); !ok || v != 1 {
		t.Errorf("backupd_volume_info of the PVC on node-b: %v %v", v, ok)
	}

	// Retention by the leader (node-a) treats both nodes' snapshots as one
	// series: keepLast 3 pushes node-a's out as node-b's come.
	eventually(t, "node-a's snapshots pushed out by node-b's", time.Minute, func() (bool, string) {
		snaps := repo.snapshots(ctx)[pol]
		left := 0
		for _, s := range snaps {
			if fromA[s.ID.String()] {
				left++
			}
		}
		return left == 0 && len(snaps) <= 4, fmt.Sprintf("%d snapshots, %d of node-a's", len(snaps), left)
	})
	if n := len(agA.rec.records(pol, results.Backup)); n != runsA {
		t.Errorf("node-a ran %d backups of the PVC after it moved", n-runsA)
	}
	for _, s := range agA.a.Daemon().Status() {
		if s.Policy == pol {
			t.Errorf("node-a's daemon still schedules %s", pol)
		}
	}
	// Events tell the story on the PVC.
	ev := c.eventsOn(t, ctx, "PersistentVolumeClaim", "moving-data")
	if !hasLine(ev, "VolumeReleased", "node-a", "mover-0") || !hasLine(ev, "VolumeScheduled", "node-b", "mover-1") {
		t.Errorf("Events on the PVC: %v", ev)
	}
}
