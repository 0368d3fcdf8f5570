package agent_test

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/kube/agent"
	"github.com/meshbackup/backupd/backupd/kube/api/v1alpha1"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/results"
)

// TestLeaderRetriesPostponedRetention: the leader's retention of another
// node's volume, postponed because a backup holds the repository (here a
// third node's long backup, whose shared lock the test holds, outlasting
// the retention's wait for it), is tried again after RetainRetry, long before the next maintenance pass, and
// counts as no failure; the follower's backups, which meet the leader's
// exclusive lock, wait for it (LockWait) instead of failing as locked.
func TestLeaderRetriesPostponedRetention(t *testing.T) {
	c := startCluster(t, `
apiVersion: backupd.meshbackup.io/v1alpha1
kind: BackupPolicy
metadata: {name: mesh, namespace: shop}
spec:
  repository: shared
  meshDefault: true
  schedule: "@every 1s"
  rpo: 1m
  retention: {keepLast: 2}
  drill: {enabled: false}
  verify: {schedule: "@every 1h"}
`)
	env, repo, ctx := c.env, c.repo, t.Context()
	const maintenance = 30 * time.Second
	// LockWait 20s: the leader's retention waits 5 s for the held lock
	// before it is postponed.
	timing := func(o *agent.Options) {
		o.MaintenanceInterval, o.RetainRetry, o.LockWait = maintenance, time.Second, 20*time.Second
	}
	ka := newKubeletStandIn(t, ctx, env.Clientset, "node-a")
	kb := newKubeletStandIn(t, ctx, env.Clientset, "node-b")
	kb.provision(ctx, testNS, "api-data", nil)
	kb.runPod(ctx, meshPod("api-0", linkerd, "api-data"))

	// node-a leads, with no volume of its own; node-b backs api-data up.
	leader := startAgent(t, env, ka, t.TempDir(), timing)
	eventually(t, "node-a leads", 30*time.Second, func() (bool, string) { return leader.a.Leading(), "not yet" })
	follower := startAgent(t, env, kb, t.TempDir(), timing)
	const pol = "shop_api-data"
	eventually(t, "api-data listed with a snapshot", 60*time.Second, func() (bool, string) {
		for _, v := range getPolicy(t, ctx, env, "mesh").Status.Volumes {
			if v.PersistentVolumeClaim == "api-data" && v.LastSnapshotID != "" {
				return true, ""
			}
		}
		return false, "not yet"
	})

	// A third node's backup holds the repository across the leader's next
	// pass.
	other := repository.Options{Hostname: "node-c"}
	be, err := location.Open(ctx, c.spec, location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := repository.Open(ctx, be, []byte(repoPass), other)
	if err != nil {
		t.Fatal(err)
	}
	held, err := r.Lock(ctx, repository.LockOptions{Command: "backup", Policy: "shop_elsewhere", Source: "/elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	before := leader.a.Stats.RetainPostponed.Load()
	var postponedAt time.Time
	eventually(t, "the leader's retention postponed by the backup's lock", 2*maintenance, func() (bool, string) {
		postponedAt = time.Now()
		return leader.a.Stats.RetainPostponed.Load() > before, "not yet"
	})
	if n := len(repo.snapshots(ctx)[pol]); n <= 3 {
		t.Fatalf("%d snapshots of %s before retention: the test needs more than keepLast+1", n, pol)
	}
	retained := leader.a.Stats.Retained.Load()
	if err := held.Unlock(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "retention once the backup is done", maintenance/2, func() (bool, string) {
		return leader.a.Stats.Retained.Load() > retained, fmt.Sprintf("postponed %d times", leader.a.Stats.RetainPostponed.Load())
	})
	if since := time.Since(postponedAt); since >= maintenance {
		t.Fatalf("retention came %s after it was postponed: the maintenance pass, not a retry", since)
	}
	eventually(t, "api-data held to keepLast 2 (+1 being written)", 20*time.Second, func() (bool, string) {
		n := len(repo.snapshots(ctx)[pol])
		return n <= 3, fmt.Sprintf("%d snapshots", n)
	})

	// No failure anywhere: not the postponement, and not the follower's
	// backups that met the leader's exclusive lock (they waited).
	for _, rec := range follower.rec.records(pol, results.Backup) {
		if rec.Outcome == results.Failure {
			t.Errorf("backup %s of %s failed (%s): %s", rec.RunID, pol, rec.Reason, rec.Error)
		}
	}
	for _, reason := range []string{"locked", "repository"} {
		if v, _ := gauge(t, follower.reg, "backupd_backup_failures_total", map[string]string{"policy": pol, "reason": reason}); v != 0 {
			t.Errorf("backupd_backup_failures_total{reason=%q} of %s = %v", reason, pol, v)
		}
	}
	if ev := c.eventsOn(t, ctx, "BackupPolicy", "mesh"); hasLine(ev, "Warning/") {
		t.Errorf("Warning events on the policy: %v", ev)
	}
	bp := getPolicy(t, ctx, env, "mesh")
	for _, ct := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionRPOMet} {
		if cond := findCondition(bp.Status.Conditions, ct); cond == nil || cond.Status != metav1.ConditionTrue {
			t.Errorf("condition %s: %+v", ct, cond)
		}
	}
}
