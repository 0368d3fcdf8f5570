package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/meshbackup/backupd/backupd/repository"
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
// backs it up, every MaintenanceInterval, and again after RetainRetry for
// the volumes a backup's lock postponed; the policies' conditions every
// StatusInterval.
func (a *Agent) maintain(ctx context.Context) {
	retain := time.NewTicker(a.opt.MaintenanceInterval)
	defer retain.Stop()
	conds := time.NewTicker(a.opt.StatusInterval)
	defer conds.Stop()
	applied := map[string]string{}
	postponed := a.retainAll(ctx, nil)
	var retry <-chan time.Time
	for {
		a.writeConditions(ctx, applied)
		if len(postponed) > 0 && retry == nil {
			retry = time.After(a.opt.RetainRetry + rand.N(a.opt.RetainRetry/5+1))
		}
		select {
		case <-ctx.Done():
			return
		case <-retain.C:
			retry = nil
			postponed = a.retainAll(ctx, nil)
		case <-retry:
			retry = nil
			postponed = a.retainAll(ctx, postponed)
		case <-conds.C:
		}
	}
}

// retainAll applies each policy's retention to each PVC its status lists
// (only to those of the set only, if not nil). A volume no longer listed
// (its pod is gone) keeps all its snapshots. It returns the volumes (by
// daemon policy name) whose retention a lock postponed: a backup was
// running, which is no failure; they are tried again soon.
func (a *Agent) retainAll(ctx context.Context, only map[string]bool) map[string]bool {
	d := a.Daemon()
	if d == nil {
		return nil
	}
	postponed := map[string]bool{}
	for _, bp := range a.policies() {
		if bp.Spec.Retention == nil {
			continue
		}
		for _, e := range bp.Status.Volumes {
			if e.PersistentVolumeClaim == "" || ctx.Err() != nil {
				continue
			}
			v := Volume{Namespace: bp.Namespace, PVC: e.PersistentVolumeClaim, Policy: bp}
			if only != nil && !only[v.PolicyName()] {
				continue
			}
			p, err := PolicyConfig(v, a.opt.ClusterName, "", "")
			if err != nil {
				continue
			}
			err = d.Retain(ctx, p)
			switch {
			case errors.Is(err, repository.ErrLocked):
				postponed[p.Name] = true
				a.Stats.RetainPostponed.Add(1)
				a.log.Info("retention postponed: a backup holds the repository; trying again soon", "policy", p.Name, "retry_in", a.opt.RetainRetry, "err", err)
				continue
			case err != nil:
				if ctx.Err() == nil {
					a.log.Warn("retention failed; trying again at the next maintenance pass", "policy", p.Name, "err", err)
				}
				continue
			}
			a.Stats.Retained.Add(1)
		}
	}
	return postponed
}
