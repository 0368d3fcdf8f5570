package agent

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshbackup/backupd/backupd/kube/api/v1alpha1"
)

func TestMeshOf(t *testing.T) {
	sts := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "consul-server"}}
	for _, tc := range []struct {
		name   string
		ann    map[string]string
		labels map[string]string
		owners []metav1.OwnerReference
		want   Mesh
	}{
		{"istio sidecar", map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`}, nil, nil, MeshIstio},
		{"linkerd proxy", map[string]string{"linkerd.io/proxy-version": "stable-2.14.10"}, nil, nil, MeshLinkerd},
		{"consul connect injected", map[string]string{"consul.hashicorp.com/connect-inject-status": "injected"}, nil, nil, MeshConsul},
		{"consul inject asked, not done", map[string]string{"consul.hashicorp.com/connect-inject": "true"}, nil, nil, MeshNone},
		{"istio inject label only", nil, map[string]string{"sidecar.istio.io/inject": "true"}, nil, MeshNone},
		{"consul server chart labels", nil, map[string]string{"app": "consul", "component": "server"}, sts, MeshConsulServer},
		{"consul server recommended labels", nil, map[string]string{"app.kubernetes.io/name": "consul", "app.kubernetes.io/component": "server"}, sts, MeshConsulServer},
		{"consul server labels without StatefulSet", nil, map[string]string{"app": "consul", "component": "server"}, nil, MeshNone},
		{"consul client labels", nil, map[string]string{"app": "consul", "component": "client"}, sts, MeshNone},
		{"plain pod", nil, map[string]string{"app": "web"}, nil, MeshNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: tc.ann, Labels: tc.labels, OwnerReferences: tc.owners}}
			if got := MeshOf(pod); got != tc.want {
				t.Errorf("MeshOf = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	istio := map[string]string{"sidecar.istio.io/status": "{}"}
	pvcVol := corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}
	emptyVol := corev1.Volume{Name: "istio-envoy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	tmpfsVol := corev1.Volume{Name: "linkerd-identity-end-entity", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}
	never := []corev1.Volume{
		{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}},
		{Name: "certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "x"}}},
		{Name: "istiod-ca-cert", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
		{Name: "istio-podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{}}},
		{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}}},
		tmpfsVol,
	}
	mesh := &v1alpha1.BackupPolicy{Spec: v1alpha1.BackupPolicySpec{MeshDefault: true}}
	meshEmpty := &v1alpha1.BackupPolicy{Spec: v1alpha1.BackupPolicySpec{MeshDefault: true, IncludeEmptyDir: true}}
	bySel := &v1alpha1.BackupPolicy{Spec: v1alpha1.BackupPolicySpec{Selector: &v1alpha1.VolumeSelector{
		PersistentVolumeClaimSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"backup": "yes"}}}}}
	byPod := &v1alpha1.BackupPolicy{Spec: v1alpha1.BackupPolicySpec{Selector: &v1alpha1.VolumeSelector{
		PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}}
	ann := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	merge := func(a, b map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range a {
			m[k] = v
		}
		for k, v := range b {
			m[k] = v
		}
		return m
	}
	type tc struct {
		name              string
		pol               *v1alpha1.BackupPolicy
		podAnn, podLabels map[string]string
		vol               corev1.Volume
		pvcAnn, pvcLabels map[string]string
		nsAnn             map[string]string
		want              bool
	}
	cases := []tc{
		{name: "mesh pod PVC by default", pol: mesh, podAnn: istio, vol: pvcVol, want: true},
		{name: "plain pod PVC not by mesh default", pol: mesh, vol: pvcVol, want: false},
		{name: "mesh pod emptyDir not by default", pol: mesh, podAnn: istio, vol: emptyVol, want: false},
		{name: "mesh pod emptyDir with includeEmptyDir", pol: meshEmpty, podAnn: istio, vol: emptyVol, want: true},
		{name: "mesh pod emptyDir opted in by include-volumes", pol: mesh, podAnn: merge(istio, ann(AnnotationIncludeVolumes, "istio-envoy")), vol: emptyVol, want: true},
		{name: "pod backup=true does not opt emptyDir in", pol: mesh, podAnn: merge(istio, ann(AnnotationBackup, "true")), vol: emptyVol, want: false},
		{name: "memory emptyDir never, even listed", pol: meshEmpty, podAnn: merge(istio, ann(AnnotationIncludeVolumes, tmpfsVol.Name)), vol: tmpfsVol, want: false},
		{name: "pod opt-out", pol: mesh, podAnn: merge(istio, ann(AnnotationBackup, "false")), vol: pvcVol, want: false},
		{name: "PVC opt-out", pol: mesh, podAnn: istio, vol: pvcVol, pvcAnn: ann(AnnotationBackup, "false"), want: false},
		{name: "namespace opt-out", pol: mesh, podAnn: istio, vol: pvcVol, nsAnn: ann(AnnotationBackup, "false"), want: false},
		{name: "PVC opt-in beats namespace opt-out", pol: mesh, podAnn: istio, vol: pvcVol, pvcAnn: ann(AnnotationBackup, "true"), nsAnn: ann(AnnotationBackup, "false"), want: true},
		{name: "pod opt-in beats PVC opt-out", pol: mesh, podAnn: merge(istio, ann(AnnotationBackup, "true")), vol: pvcVol, pvcAnn: ann(AnnotationBackup, "false"), want: true},
		{name: "pod opt-out beats PVC opt-in", pol: mesh, podAnn: merge(istio, ann(AnnotationBackup, "false")), vol: pvcVol, pvcAnn: ann(AnnotationBackup, "true"), want: false},
		{name: "exclude-volumes beats pod opt-in", pol: mesh, podAnn: merge(istio, ann(AnnotationBackup, "true", AnnotationExcludeVolumes, "tmp, data")), vol: pvcVol, want: false},
		{name: "plain pod opted in by namespace under mesh default", pol: mesh, vol: pvcVol, nsAnn: ann(AnnotationBackup, "true"), want: true},
		{name: "PVC selector", pol: bySel, vol: pvcVol, pvcLabels: ann("backup", "yes"), want: true},
		{name: "PVC selector no match", pol: bySel, podAnn: istio, vol: pvcVol, pvcLabels: ann("backup", "no"), want: false},
		{name: "pod selector", pol: byPod, podLabels: ann("app", "db"), vol: pvcVol, want: true},
		{name: "pod selector opt-out", pol: byPod, podLabels: ann("app", "db"), podAnn: ann(AnnotationBackup, "false"), vol: pvcVol, want: false},
		{name: "unparsable annotation ignored", pol: mesh, podAnn: merge(istio, ann(AnnotationBackup, "maybe")), vol: pvcVol, want: true},
	}
	for _, v := range never {
		cases = append(cases, tc{name: "never " + v.Name, pol: meshEmpty, podAnn: merge(istio, ann(AnnotationBackup, "true", AnnotationIncludeVolumes, v.Name)), vol: v, want: false})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Annotations: c.podAnn, Labels: c.podLabels}}
			pod.Spec.Volumes = []corev1.Volume{c.vol}
			var pvc *corev1.PersistentVolumeClaim
			if c.vol.PersistentVolumeClaim != nil {
				pvc = &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "ns", Annotations: c.pvcAnn, Labels: c.pvcLabels}}
			}
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Annotations: c.nsAnn}}
			d := decide(c.pol, pod, c.vol, pvc, ns)
			if d.backup != c.want {
				t.Errorf("backup = %v (%s), want %v", d.backup, d.why, c.want)
			}
		})
	}
}

func TestLayoutDir(t *testing.T) {
	l := Layout{KubeletDir: "/var/lib/kubelet", HostRoot: "/host"}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID("u-1")}}
	block := corev1.PersistentVolumeBlock
	pv := func(name string, src corev1.PersistentVolumeSource) *corev1.PersistentVolume {
		return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: src}}
	}
	blockPV := pv("pv-b", corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "d"}})
	blockPV.Spec.VolumeMode = &block
	for _, tc := range []struct {
		name string
		vol  corev1.Volume
		pv   *corev1.PersistentVolume
		want string // "" : an error
	}{
		{"CSI", corev1.Volume{Name: "data"}, pv("pvc-123", corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "ebs.csi.aws.com"}}),
			"/var/lib/kubelet/pods/u-1/volumes/kubernetes.io~csi/pvc-123/mount"},
		{"local", corev1.Volume{Name: "data"}, pv("local-pv", corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/mnt/disks/1"}}),
			"/var/lib/kubelet/pods/u-1/volumes/kubernetes.io~local-volume/local-pv"},
		{"hostPath", corev1.Volume{Name: "data"}, pv("hp", corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/data/../data"}}),
			"/host/srv/data"},
		{"emptyDir", corev1.Volume{Name: "istio-envoy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}, nil,
			"/var/lib/kubelet/pods/u-1/volumes/kubernetes.io~empty-dir/istio-envoy"},
		{"NFS PV unsupported", corev1.Volume{Name: "data"}, pv("nfs", corev1.PersistentVolumeSource{NFS: &corev1.NFSVolumeSource{}}), ""},
		{"block PV refused", corev1.Volume{Name: "data"}, blockPV, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.Dir(pod, tc.vol, tc.pv)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("Dir = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Dir = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestPolicyNameStable(t *testing.T) {
	long := strings.Repeat("a", 60)
	for _, tc := range []struct {
		v    Volume
		want string
	}{
		{Volume{Namespace: "shop", PVC: "data-web-0", Pod: "web-0"}, "shop_data-web-0"},
		{Volume{Namespace: "shop", PVC: "data-web-0", Pod: "web-0-restarted"}, "shop_data-web-0"},
		{Volume{Namespace: "shop", Pod: "web-0", VolumeName: "istio-envoy"}, "shop_web-0_istio-envoy"},
	} {
		if got := tc.v.PolicyName(); got != tc.want {
			t.Errorf("PolicyName(%+v) = %q, want %q", tc.v, got, tc.want)
		}
	}
	a, b := Volume{Namespace: "ns", PVC: long + "1"}.PolicyName(), Volume{Namespace: "ns", PVC: long + "2"}.PolicyName()
	if len(a) > 63 || len(b) > 63 || a == b {
		t.Errorf("long names %q and %q: want distinct names of at most 63 characters", a, b)
	}
	if h := (Volume{Namespace: "shop", PVC: "d"}).Host("prod"); h != "prod_shop_d" {
		t.Errorf("Host = %q", h)
	}
}
