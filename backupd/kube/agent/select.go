package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshbackup/backupd/backupd/kube/api/v1alpha1"
)

// Volume is one selected volume of a pod on this node, with the policy
// that backs it up and the directory where the kubelet mounted it.
type Volume struct {
	Namespace string
	// PVC is the claim's name; empty for an emptyDir.
	PVC    string
	PV     string
	Pod    string
	PodUID string
	// VolumeName is the volume's name in the pod spec.
	VolumeName string
	Mesh       Mesh
	// Dir is the mounted directory as the agent sees it.
	Dir string
	// Policy is the BackupPolicy (of Namespace) that selected the volume.
	Policy *v1alpha1.BackupPolicy
	// Why says which rule selected it.
	Why string
}

// StatusName is the volume's key in BackupPolicy status.volumes: stable
// across pod restarts for a PVC.
func (v Volume) StatusName() string {
	if v.PVC != "" {
		return "pvc/" + v.PVC
	}
	return "pod/" + v.Pod + "/" + v.VolumeName
}

// PolicyName is the daemon policy's name of the volume: <namespace>_<pvc>
// (or <namespace>_<pod>_<volume> for an emptyDir, which dies with its pod
// anyway). Kubernetes names have no '_', so the name is unambiguous; one
// longer than the daemon's 63 characters is cut and given a hash suffix.
func (v Volume) PolicyName() string {
	n := v.Namespace + "_" + v.PVC
	if v.PVC == "" {
		n = v.Namespace + "_" + v.Pod + "_" + v.VolumeName
	}
	return shorten(n, 63)
}

// Host is the host name the volume's snapshots and run records carry:
// <cluster>_<policy name>. It follows the PVC, not the node, so a PVC
// moving to another node keeps its parent snapshots, its retention group,
// and the closing of its interrupted runs.
func (v Volume) Host(cluster string) string {
	return shorten(cluster+"_"+v.PolicyName(), 253)
}

func shorten(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return s[:limit-9] + "-" + hex.EncodeToString(sum[:4])
}

// Cluster is what the agent knows of the cluster, from its informers.
type Cluster struct {
	// Pods are the pods of this node.
	Pods       []*corev1.Pod
	PVCs       map[string]*corev1.PersistentVolumeClaim // namespace/name
	PVs        map[string]*corev1.PersistentVolume
	Namespaces map[string]*corev1.Namespace
	Policies   []*v1alpha1.BackupPolicy
}

// Layout is where the node's kubelet keeps pod volumes, as the agent sees
// it.
type Layout struct {
	// KubeletDir is the kubelet's root directory (its pods/ below),
	// /var/lib/kubelet mounted at the same path by the chart.
	KubeletDir string
	// HostRoot is where the node's root is mounted, for hostPath PVs; empty:
	// their paths are taken as they are.
	HostRoot string
}

// Dir returns the directory of a pod volume: a PVC's bound PV (CSI, local
// or hostPath) or an emptyDir.
func (l Layout) Dir(pod *corev1.Pod, v corev1.Volume, pv *corev1.PersistentVolume) (string, error) {
	vols := filepath.Join(l.KubeletDir, "pods", string(pod.UID), "volumes")
	if pv == nil {
		if v.EmptyDir != nil {
			return filepath.Join(vols, "kubernetes.io~empty-dir", v.Name), nil
		}
		return "", errors.New("not a PV or emptyDir volume")
	}
	if pv.Spec.VolumeMode != nil && *pv.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return "", fmt.Errorf("PV %s is a block volume (only file systems are backed up)", pv.Name)
	}
	switch s := pv.Spec.PersistentVolumeSource; {
	case s.CSI != nil:
		return filepath.Join(vols, "kubernetes.io~csi", pv.Name, "mount"), nil
	case s.Local != nil:
		return filepath.Join(vols, "kubernetes.io~local-volume", pv.Name), nil
	case s.HostPath != nil:
		return filepath.Join(l.HostRoot, filepath.Clean("/"+s.HostPath.Path)), nil
	}
	return "", fmt.Errorf("PV %s: volume source not supported (CSI, local and hostPath are)", pv.Name)
}

// Skip is a volume a policy would take but that cannot be backed up (yet).
type Skip struct {
	Namespace, Pod, Volume, Reason string
}

// Select returns the volumes of the node's pods that the namespaces'
// policies take, by the rules of docs/DESIGN.md "Node agent". A volume is
// taken by at most one policy: the first by name (the others are listed in
// skipped). Pods not running, or being deleted, are left out: their
// volumes may not be mounted.
func Select(c Cluster, l Layout) (vols []Volume, skipped []Skip) {
	pols := slices.Clone(c.Policies)
	slices.SortFunc(pols, func(a, b *v1alpha1.BackupPolicy) int { return strings.Compare(a.Name, b.Name) })
	pods := slices.Clone(c.Pods)
	slices.SortFunc(pods, func(a, b *corev1.Pod) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	taken := map[string]string{} // policy name -> BackupPolicy
	for _, pod := range pods {
		if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil {
			continue
		}
		ns := c.Namespaces[pod.Namespace]
		for _, v := range pod.Spec.Volumes {
			kind, claim := kindOf(pod, v)
			if kind == kindNever {
				continue
			}
			var pvc *corev1.PersistentVolumeClaim
			if kind == kindPVC {
				pvc = c.PVCs[pod.Namespace+"/"+claim]
			}
			for _, pol := range pols {
				if pol.Namespace != pod.Namespace || pol.Spec.Suspend {
					continue
				}
				if d := decide(pol, pod, v, pvc, ns); !d.backup {
					continue
				} else {
					vol := Volume{Namespace: pod.Namespace, Pod: pod.Name, PodUID: string(pod.UID), VolumeName: v.Name,
						Mesh: MeshOf(pod), Policy: pol, Why: d.why}
					var pv *corev1.PersistentVolume
					if kind == kindPVC {
						vol.PVC = claim
						if pvc == nil || pvc.Spec.VolumeName == "" || pvc.Status.Phase != corev1.ClaimBound {
							skipped = append(skipped, Skip{pod.Namespace, pod.Name, v.Name, "PVC " + claim + " is not bound"})
							break
						}
						vol.PV = pvc.Spec.VolumeName
						if pv = c.PVs[vol.PV]; pv == nil {
							skipped = append(skipped, Skip{pod.Namespace, pod.Name, v.Name, "PV " + vol.PV + " not found"})
							break
						}
					}
					dir, err := l.Dir(pod, v, pv)
					if err != nil {
						skipped = append(skipped, Skip{pod.Namespace, pod.Name, v.Name, err.Error()})
						break
					}
					vol.Dir = dir
					if other, ok := taken[vol.PolicyName()]; ok {
						skipped = append(skipped, Skip{pod.Namespace, pod.Name, v.Name, "already backed up by BackupPolicy " + other})
						break
					}
					taken[vol.PolicyName()] = pol.Name
					vols = append(vols, vol)
				}
				break // the first policy that takes a volume has it
			}
		}
	}
	return vols, skipped
}
