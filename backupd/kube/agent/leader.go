package agent

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// elect takes part in the leader election until ctx ends. The leader does
// the cluster-wide work (maintain); losing the lease stops it, and the
// agent stands again.
func (a *Agent) elect(ctx context.Context) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: a.opt.LeaseName, Namespace: a.opt.Namespace},
		Client:     a.opt.Clientset.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: a.opt.NodeName},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   a.opt.LeaseDuration,
			RenewDeadline:   a.opt.RenewDeadline,
			RetryPeriod:     a.opt.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            a.opt.LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					a.leading.Store(true)
					a.opt.Metrics.SetLeader(true)
					a.log.Info("leader lease taken: this agent runs retention and verify of the shared repositories")
					a.maintain(ctx)
				},
				OnStoppedLeading: func() {
					a.leading.Store(false)
					a.opt.Metrics.SetLeader(false)
					a.log.Info("leader lease released or lost")
				},
			},
		})
		if err != nil {
			return err
		}
		le.Run(ctx)
	}
	return nil
}

// maintain is the leader's work until ctx ends (the lease is lost):
// retention of every volume the policies' status lists, whichever node
// backs it up, every MaintenanceInterval; the policies' conditions every
// StatusInterval.
func (a *Agent) maintain(ctx context.Context) {
	retain := time.NewTicker(a.opt.MaintenanceInterval)
	defer retain.Stop()
	conds := time.NewTicker(a.opt.StatusInterval)
	defer conds.Stop()
	applied := map[string]string{}
	a.retainAll(ctx)
	for {
		a.writeConditions(ctx, applied)
		select {
		case <-ctx.Done():
			return
		case <-retain.C:
			a.retainAll(ctx)
		case <-conds.C:
		}
	}
}

// retainAll applies each policy's retention to each PVC its status lists.
// A volume no longer listed (its pod is gone) keeps all its snapshots.
func (a *Agent) retainAll(ctx context.Context) {
	d := a.Daemon()
	if d == nil {
		return
	}
	for _, bp := range a.policies() {
		if bp.Spec.Retention == nil {
			continue
		}
		for _, e := range bp.Status.Volumes {
			if e.PersistentVolumeClaim == "" || ctx.Err() != nil {
				continue
			}
			v := Volume{Namespace: bp.Namespace, PVC: e.PersistentVolumeClaim, Policy: bp}
			p, err := PolicyConfig(v, a.opt.ClusterName, "", "")
			if err != nil {
				continue
			}
			if err := d.Retain(ctx, p); err != nil {
				a.log.Info("retention postponed", "policy", p.Name, "err", err)
				continue
			}
			a.Stats.Retained.Add(1)
		}
	}
}
