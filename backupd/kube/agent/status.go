package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/backupd/kube/api/v1alpha1"
	"github.com/meshbackup/backupd/backupd/results"
)

// LeaderFieldManager is the field manager of the fields the leader writes
// (conditions, observedGeneration, lastBackupTime, volumeCount); an agent
// writes its volumes' entries as FieldManager(node).
const LeaderFieldManager = "backupd-agent-leader"

// FieldManager is the field manager of a node's agent.
func FieldManager(node string) string { return "backupd-agent/" + node }

// statusLoop writes this node's volume entries of the policies' status
// every StatusInterval and after each run.
func (a *Agent) statusLoop(ctx context.Context) error {
	t := time.NewTicker(a.opt.StatusInterval)
	defer t.Stop()
	applied := map[string]string{} // namespace/name -> last applied JSON
	for {
		a.writeVolumeStatus(ctx, applied)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-a.runDone:
		}
	}
}

// VolumeStatuses are the status entries of vols from the daemon's state,
// grouped by policy (namespace/name).
func VolumeStatuses(vols []Volume, st []daemon.Status, node string) map[string][]v1alpha1.VolumeStatus {
	byPolicy := map[string]daemon.Status{}
	for _, s := range st {
		byPolicy[s.Policy] = s
	}
	out := map[string][]v1alpha1.VolumeStatus{}
	for _, v := range vols {
		vs := v1alpha1.VolumeStatus{Name: v.StatusName(), Namespace: v.Namespace, PersistentVolumeClaim: v.PVC, Pod: v.Pod, Volume: v.VolumeName, Node: node}
		if s, ok := byPolicy[v.PolicyName()]; ok {
			if !s.LastSnapshot.IsZero() {
				t := metav1.NewTime(s.LastSnapshot)
				vs.LastBackupTime = &t
			}
			// Records are newest first.
			for _, r := range s.LastBackups {
				if r.Outcome == results.Success || r.Outcome == results.Partial {
					vs.LastSnapshotID = r.Snapshot
					break
				}
			}
			if len(s.LastBackups) > 0 && s.LastBackups[0].Outcome == results.Failure {
				vs.LastError = truncate(s.LastBackups[0].Error, 4000)
			}
			if len(s.LastDrills) > 0 {
				r := s.LastDrills[0]
				t := metav1.NewTime(r.End)
				vs.LastDrillTime = &t
				vs.LastDrillResult = v1alpha1.DrillPassed
				if r.Outcome == results.Failure {
					vs.LastDrillResult = v1alpha1.DrillFailed
					if vs.LastError == "" {
						vs.LastError = truncate("drill: "+r.Error, 4000)
					}
				}
			}
		}
		key := v.Policy.Namespace + "/" + v.Policy.Name
		out[key] = append(out[key], vs)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (a *Agent) writeVolumeStatus(ctx context.Context, applied map[string]string) {
	d := a.Daemon()
	if d == nil {
		return
	}
	groups := VolumeStatuses(a.Volumes(), d.Status(), a.opt.NodeName)
	// Policies this agent wrote before and has no volume of now get an
	// apply without entries: the node's entries are removed.
	for key := range applied {
		if _, ok := groups[key]; !ok {
			groups[key] = nil
		}
	}
	for key, vols := range groups {
		ns, name, _ := splitKey(key)
		status := map[string]any{}
		if len(vols) > 0 {
			u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&v1alpha1.BackupPolicyStatus{Volumes: vols})
			if err != nil {
				continue
			}
			status = u
		}
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "BackupPolicy",
			"metadata": map[string]any{"name": name, "namespace": ns},
		}}
		if len(status) > 0 {
			obj.Object["status"] = status
		}
		b, _ := json.Marshal(obj.Object)
		if applied[key] == string(b) {
			continue
		}
		_, err := a.opt.Dynamic.Resource(PolicyGVR).Namespace(ns).ApplyStatus(ctx, name, obj,
			metav1.ApplyOptions{FieldManager: FieldManager(a.opt.NodeName), Force: true})
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("could not write the BackupPolicy's status", "policy", key, "err", err)
			}
			continue
		}
		if len(vols) == 0 {
			delete(applied, key)
		} else {
			applied[key] = string(b)
		}
	}
}

func splitKey(k string) (ns, name string, ok bool) {
	for i := range len(k) {
		if k[i] == '/' {
			return k[:i], k[i+1:], true
		}
	}
	return "", k, false
}

// Conditions computes a policy's aggregate status from its volume entries
// (every node's), keeping the transition times of unchanged conditions.
func Conditions(bp *v1alpha1.BackupPolicy, repoExists bool, now time.Time) v1alpha1.BackupPolicyStatus {
	st := v1alpha1.BackupPolicyStatus{ObservedGeneration: bp.Generation, Conditions: append([]metav1.Condition(nil), bp.Status.Conditions...),
		VolumeCount: int32(len(bp.Status.Volumes))}
	set := func(t string, ok metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: ok, Reason: reason, Message: msg, ObservedGeneration: bp.Generation})
	}
	vols := bp.Status.Volumes
	switch {
	case !repoExists:
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, "RepositoryNotFound", fmt.Sprintf("BackupRepository %q does not exist", bp.Spec.Repository))
	case bp.Spec.Suspend:
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, "Suspended", "spec.suspend is true")
	case len(vols) == 0:
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, "NoVolumes", "no running pod mounts a volume this policy selects")
	default:
		set(v1alpha1.ConditionReady, metav1.ConditionTrue, "VolumesSelected", fmt.Sprintf("%d volumes selected", len(vols)))
	}
	var oldest *metav1.Time
	stale, never := 0, 0
	for _, v := range vols {
		if v.LastBackupTime == nil {
			never++
			continue
		}
		if oldest == nil || v.LastBackupTime.Before(oldest) {
			t := *v.LastBackupTime
			oldest = &t
		}
		if now.Sub(v.LastBackupTime.Time) > bp.Spec.RPO.Duration {
			stale++
		}
	}
	if never == 0 {
		st.LastBackupTime = oldest
	}
	switch {
	case len(vols) == 0:
		set(v1alpha1.ConditionRPOMet, metav1.ConditionUnknown, "NoVolumes", "no volume selected")
	case stale+never > 0:
		set(v1alpha1.ConditionRPOMet, metav1.ConditionFalse, "RPOMissed",
			fmt.Sprintf("%d of %d volumes have no good snapshot younger than the RPO (%s)", stale+never, len(vols), bp.Spec.RPO.Duration))
	default:
		set(v1alpha1.ConditionRPOMet, metav1.ConditionTrue, "RPOMet", fmt.Sprintf("every volume's newest good snapshot is younger than %s", bp.Spec.RPO.Duration))
	}
	passed, failed := 0, 0
	for _, v := range vols {
		switch v.LastDrillResult {
		case v1alpha1.DrillPassed:
			passed++
		case v1alpha1.DrillFailed:
			failed++
		}
	}
	switch {
	case bp.Spec.Drill != nil && bp.Spec.Drill.Enabled != nil && !*bp.Spec.Drill.Enabled:
		set(v1alpha1.ConditionDrillPassed, metav1.ConditionUnknown, "DrillsDisabled", "spec.drill.enabled is false")
	case failed > 0:
		set(v1alpha1.ConditionDrillPassed, metav1.ConditionFalse, "DrillFailed", fmt.Sprintf("the last drill of %d of %d volumes failed", failed, len(vols)))
	case len(vols) > 0 && passed == len(vols):
		set(v1alpha1.ConditionDrillPassed, metav1.ConditionTrue, "DrillPassed", "every volume's last drill restored it byte-exact")
	default:
		set(v1alpha1.ConditionDrillPassed, metav1.ConditionUnknown, "NoDrillYet", fmt.Sprintf("%d of %d volumes drilled", passed, len(vols)))
	}
	return st
}

// writeConditions is the leader's: every policy's aggregate status.
func (a *Agent) writeConditions(ctx context.Context, applied map[string]string) {
	now := time.Now()
	for _, bp := range a.policies() {
		st := Conditions(bp, a.repository(bp.Spec.Repository) != nil, now)
		st.Volumes = nil
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
		if err != nil {
			continue
		}
		key := bp.Namespace + "/" + bp.Name
		b, _ := json.Marshal(u)
		if applied[key] == string(b) {
			continue
		}
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "BackupPolicy",
			"metadata": map[string]any{"name": bp.Name, "namespace": bp.Namespace},
			"status":   u,
		}}
		if _, err := a.opt.Dynamic.Resource(PolicyGVR).Namespace(bp.Namespace).ApplyStatus(ctx, bp.Name, obj,
			metav1.ApplyOptions{FieldManager: LeaderFieldManager, Force: true}); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("could not write the BackupPolicy's conditions", "policy", key, "err", err)
			}
			continue
		}
		applied[key] = string(b)
	}
}
