package agent

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshbackup/backupd/backupd/kube/api/v1alpha1"
)

// Annotations users set on a pod, a PVC or a namespace (README
// "Kubernetes", docs/DESIGN.md "Node agent").
const (
	// AnnotationBackup "true" opts the volumes in (a meshDefault policy
	// then takes them even outside a mesh), "false" opts them out. The
	// most specific one set wins: the pod's, then the PVC's, then the
	// namespace's.
	AnnotationBackup = "backupd.meshbackup.io/backup"
	// AnnotationIncludeVolumes on a pod lists volume names (comma
	// separated) to back up whatever the other annotations say; it is the
	// per-pod opt-in of emptyDir volumes.
	AnnotationIncludeVolumes = "backupd.meshbackup.io/include-volumes"
	// AnnotationExcludeVolumes on a pod lists volume names never to back
	// up; it beats every other rule.
	AnnotationExcludeVolumes = "backupd.meshbackup.io/exclude-volumes"
)

// Mesh is the service mesh a pod belongs to, as the agent recognises it.
type Mesh string

// Meshes.
const (
	MeshNone         Mesh = ""
	MeshIstio        Mesh = "istio"         // sidecar.istio.io/status
	MeshLinkerd      Mesh = "linkerd"       // linkerd.io/proxy-version
	MeshConsul       Mesh = "consul"        // consul.hashicorp.com/connect-inject-status
	MeshConsulServer Mesh = "consul-server" // a Consul server StatefulSet's pod
)

// MeshOf returns the mesh of a pod: an injected sidecar's annotation, or a
// Consul server StatefulSet's labels.
func MeshOf(pod *corev1.Pod) Mesh {
	a := pod.Annotations
	switch {
	case a["sidecar.istio.io/status"] != "":
		return MeshIstio
	case a["linkerd.io/proxy-version"] != "":
		return MeshLinkerd
	case a["consul.hashicorp.com/connect-inject-status"] == "injected":
		return MeshConsul
	case isConsulServer(pod):
		return MeshConsulServer
	}
	return MeshNone
}

// isConsulServer: owned by a StatefulSet and labelled as the hashicorp/consul
// Helm chart labels its server pods (app=consul, component=server), or with
// the recommended labels (app.kubernetes.io/name=consul,
// app.kubernetes.io/component=server).
func isConsulServer(pod *corev1.Pod) bool {
	owned := slices.ContainsFunc(pod.OwnerReferences, func(o metav1.OwnerReference) bool {
		return o.Kind == "StatefulSet" && strings.HasPrefix(o.APIVersion, "apps/")
	})
	l := pod.Labels
	return owned && (l["app"] == "consul" && l["component"] == "server" ||
		l["app.kubernetes.io/name"] == "consul" && l["app.kubernetes.io/component"] == "server")
}

// volumeKind is what the agent makes of a pod volume.
type volumeKind int

const (
	kindNever    volumeKind = iota // secret, configMap, projected, downwardAPI, inline hostPath, tmpfs, ...
	kindPVC                        // a PVC (or a generic ephemeral volume's PVC)
	kindEmptyDir                   // an emptyDir on the node's disk
)

// kindOf classifies a pod volume and names its PVC.
func kindOf(pod *corev1.Pod, v corev1.Volume) (volumeKind, string) {
	switch {
	case v.PersistentVolumeClaim != nil:
		return kindPVC, v.PersistentVolumeClaim.ClaimName
	case v.Ephemeral != nil:
		// A generic ephemeral volume's PVC is named <pod>-<volume>.
		return kindPVC, pod.Name + "-" + v.Name
	case v.EmptyDir != nil && v.EmptyDir.Medium != corev1.StorageMediumMemory:
		// A memory-backed emptyDir is a tmpfs, where meshes keep keys
		// (linkerd-identity-end-entity): never.
		return kindEmptyDir, ""
	}
	return kindNever, ""
}

// optIn reads AnnotationBackup: set reports whether it is there (and
// parses as a boolean).
func optIn(meta *metav1.ObjectMeta) (on, set bool) {
	if meta == nil {
		return false, false
	}
	v, ok := meta.Annotations[AnnotationBackup]
	if !ok {
		return false, false
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, false
	}
	return b, true
}

func listed(pod *corev1.Pod, key, volume string) bool {
	for n := range strings.SplitSeq(pod.Annotations[key], ",") {
		if strings.TrimSpace(n) == volume {
			return true
		}
	}
	return false
}

// decision is whether and why one pod volume is backed up under one
// policy.
type decision struct {
	backup bool
	why    string
}

// decide applies the rules of docs/DESIGN.md "Node agent" to one volume of
// a pod for one policy of its namespace. pvc is nil for a volume that is
// not a PVC (or whose PVC is not known yet).
func decide(pol *v1alpha1.BackupPolicy, pod *corev1.Pod, v corev1.Volume, pvc *corev1.PersistentVolumeClaim, ns *corev1.Namespace) decision {
	kind, _ := kindOf(pod, v)
	if kind == kindNever {
		return decision{false, "volume type never backed up"}
	}
	if listed(pod, AnnotationExcludeVolumes, v.Name) {
		return decision{false, "pod annotation " + AnnotationExcludeVolumes}
	}
	included := listed(pod, AnnotationIncludeVolumes, v.Name)
	// The explicit choice: the most specific annotation set.
	explicit, set := included, included
	if !set {
		if explicit, set = optIn(&pod.ObjectMeta); !set && pvc != nil {
			explicit, set = optIn(&pvc.ObjectMeta)
		}
		if !set && ns != nil {
			explicit, set = optIn(&ns.ObjectMeta)
		}
	}
	if set && !explicit {
		return decision{false, "opted out by annotation " + AnnotationBackup}
	}
	if kind == kindEmptyDir && !included && !pol.Spec.IncludeEmptyDir {
		return decision{false, "emptyDir without opt-in (includeEmptyDir or " + AnnotationIncludeVolumes + ")"}
	}
	if pol.Spec.MeshDefault {
		if m := MeshOf(pod); m != MeshNone {
			return decision{true, "mesh default (" + string(m) + ")"}
		}
		if set && explicit {
			return decision{true, "opted in by annotation"}
		}
		return decision{false, "not a mesh pod"}
	}
	if sel := pol.Spec.Selector; sel != nil {
		if matches(sel.PodSelector, pod.Labels) {
			return decision{true, "pod selector"}
		}
		if pvc != nil && matches(sel.PersistentVolumeClaimSelector, pvc.Labels) {
			return decision{true, "PVC selector"}
		}
	}
	return decision{false, "not selected"}
}

// matches reports whether a label selector (nil: matches nothing) matches.
func matches(s *metav1.LabelSelector, l map[string]string) bool {
	if s == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return false
	}
	return sel.Matches(labels.Set(l))
}
