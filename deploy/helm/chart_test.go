package helm_test

import (
	"bytes"
	"context"
	"fmt"
	"github.com/meshbackup/backupd/internal/tools"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/meshbackup/backupd/backupd/kube/kubetest"
)

const (
	chartDir    = "backupd"
	release     = "backupd"
	namespace   = "backupd"
	kubeVersion = "1.37.2"
)

// valueSets are the value files the chart is rendered with: the defaults,
// every optional feature on, and AWS with IRSA.
var valueSets = []struct {
	name  string
	files []string
}{
	{"default", nil},
	{"all", []string{"testdata/values-all.yaml"}},
	{"irsa", []string{"testdata/values-irsa.yaml"}},
}

func helmBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs helm")
	}
	h, err := tools.Find("helm")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func runHelm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), helmBin(t), args...)
	// No user's Helm configuration or repositories.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// render is helm template of the chart with the value files, as helm
// install would render it into namespace backupd (with the CRDs first when
// includeCRDs).
func render(t *testing.T, files []string, includeCRDs bool, set ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	if includeCRDs {
		args = append(args, "--include-crds")
	}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return runHelm(t, args...)
}

func objects(t *testing.T, b []byte) []*unstructured.Unstructured {
	t.Helper()
	objs, err := kubetest.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func TestLint(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir, "--kube-version", kubeVersion}
			for _, f := range vs.files {
				args = append(args, "-f", f)
			}
			if out, err := runHelm(t, args...); err != nil {
				t.Errorf("%v\n%s", err, out)
			}
		})
	}
}

// What each value set renders: the objects a user asked for and no others.
func TestTemplateKinds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		want  []string // kinds, sorted, with repeats
	}{
		{"default", nil, []string{"ClusterRole", "ClusterRoleBinding", "DaemonSet", "Role", "RoleBinding", "Service", "ServiceAccount"}},
		{"all", []string{"testdata/values-all.yaml"}, []string{
			"BackupRepository", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "ConfigMap", "ConfigMap", "DaemonSet",
			"NetworkPolicy", "PodMonitor", "PrometheusRule", "Role", "RoleBinding", "Secret", "Secret", "Service", "ServiceAccount", "ServiceMonitor"}},
		{"irsa", []string{"testdata/values-irsa.yaml"}, []string{
			"BackupRepository", "ClusterRole", "ClusterRoleBinding", "DaemonSet", "PodMonitor", "Role", "RoleBinding", "ServiceAccount"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := render(t, tc.files, false)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, o := range objects(t, b) {
				kinds = append(kinds, o.GetKind())
				labels := o.GetLabels()
				for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
					if labels[l] == "" {
						t.Errorf("%s %s has no label %s", o.GetKind(), o.GetName(), l)
					}
				}
			}
			slices.Sort(kinds)
			if !slices.Equal(kinds, tc.want) {
				t.Errorf("kinds %v, want %v", kinds, tc.want)
			}
		})
	}
}

// Values that cannot make a working install are refused by helm template,
// saying which value.
func TestTemplateRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"repository without bucket", []string{"repository.create=true", "repository.password.value=x", "repository.credentials.useServiceAccount=true"}, "repository.s3.bucket is required"},
		{"repository without password", []string{"repository.create=true", "repository.s3.bucket=b", "repository.credentials.useServiceAccount=true"}, "repository.password: set existingSecret or value"},
		{"repository without credentials", []string{"repository.create=true", "repository.s3.bucket=b", "repository.password.value=x"}, "repository.credentials: set existingSecret"},
		{"access key without secret", []string{"repository.create=true", "repository.s3.bucket=b", "repository.password.value=x", "repository.credentials.accessKeyID=AK"}, "repository.credentials.secretAccessKey is required"},
		{"controller not implemented", []string{"controller.enabled=true"}, "controller.enabled: the controller Deployment is not implemented yet"},
		{"state type", []string{"agent.state.type=pvc"}, "agent.state.type must be hostPath or emptyDir"},
		{"service monitor without service", []string{"metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false"}, "metrics.serviceMonitor.enabled needs metrics.service.enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, nil, false, tc.set...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// The agent's pod: what it reads from the node, with which privileges.
func TestAgentPod(t *testing.T) {
	b, err := render(t, []string{"testdata/values-all.yaml"}, false)
	if err != nil {
		t.Fatal(err)
	}
	ds := find(objects(t, b), "DaemonSet")
	if len(ds) != 1 {
		t.Fatalf("%d DaemonSets", len(ds))
	}
	var pod struct {
		Spec struct {
			Template struct {
				Spec struct {
					Tolerations []map[string]any `json:"tolerations"`
					Containers  []struct {
						Args []string `json:"args"`
						Env  []struct {
							Name      string `json:"name"`
							ValueFrom struct {
								FieldRef struct {
									FieldPath string `json:"fieldPath"`
								} `json:"fieldRef"`
							} `json:"valueFrom"`
						} `json:"env"`
						SecurityContext struct {
							RunAsUser                *int64 `json:"runAsUser"`
							ReadOnlyRootFilesystem   bool   `json:"readOnlyRootFilesystem"`
							AllowPrivilegeEscalation *bool  `json:"allowPrivilegeEscalation"`
							Privileged               bool   `json:"privileged"`
							Capabilities             struct {
								Drop []string `json:"drop"`
								Add  []string `json:"add"`
							} `json:"capabilities"`
							SeccompProfile struct {
								Type string `json:"type"`
							} `json:"seccompProfile"`
						} `json:"securityContext"`
						VolumeMounts []struct {
							Name             string `json:"name"`
							MountPath        string `json:"mountPath"`
							ReadOnly         bool   `json:"readOnly"`
							MountPropagation string `json:"mountPropagation"`
						} `json:"volumeMounts"`
					} `json:"containers"`
					Volumes []struct {
						Name     string `json:"name"`
						HostPath *struct {
							Path string `json:"path"`
						} `json:"hostPath"`
					} `json:"volumes"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	j, _ := ds[0].MarshalJSON()
	if err := yaml.Unmarshal(j, &pod); err != nil {
		t.Fatal(err)
	}
	ps := pod.Spec.Template.Spec
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers", len(ps.Containers))
	}
	c := ps.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "agent" || !slices.Contains(c.Args, "--node-name=$(NODE_NAME)") {
		t.Errorf("args %v: want backupd agent --node-name=$(NODE_NAME)", c.Args)
	}
	checkAgentFlags(t, c.Args[1:])
	// The impact budget and the runs' bounds are the agent's defaults,
	// passed explicitly so that a values file can change them.
	for _, a := range []string{"--max-concurrent=2", "--isolate-runs=true", "--nice=10", "--io-class=best-effort:7", "--cpu-class=normal"} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("args %v lack %s", c.Args, a)
		}
	}
	var nodeName bool
	for _, e := range c.Env {
		nodeName = nodeName || e.Name == "NODE_NAME" && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}
	if !nodeName {
		t.Error("NODE_NAME is not spec.nodeName from the downward API")
	}
	sc := c.SecurityContext
	if !sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged || sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("security context %+v: want a read-only root, no privilege escalation, not privileged, RuntimeDefault seccomp", sc)
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("capabilities dropped %v, want ALL", sc.Capabilities.Drop)
	}
	add := slices.Sorted(slices.Values(sc.Capabilities.Add))
	if !slices.Equal(add, []string{"CHOWN", "DAC_READ_SEARCH", "FOWNER"}) {
		t.Errorf("capabilities added %v, want DAC_READ_SEARCH (read), CHOWN and FOWNER (drills) only", add)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
		if m.Name == "kubelet-pods" && (!m.ReadOnly || m.MountPropagation != "HostToContainer") {
			t.Errorf("kubelet pods mount %+v: want read-only with HostToContainer propagation", m)
		}
	}
	var hostPaths []string
	for _, v := range ps.Volumes {
		if v.HostPath != nil {
			hostPaths = append(hostPaths, v.Name+"="+v.HostPath.Path)
		}
	}
	// values-all.yaml puts the state in an emptyDir: the kubelet's pod
	// directory is then the only host path.
	if !slices.Equal(hostPaths, []string{"kubelet-pods=/var/lib/kubelet/pods"}) {
		t.Errorf("host paths %v, want only the kubelet's pod directory", hostPaths)
	}
	if mounts["kubelet-pods"] == "" || mounts["state"] == "" {
		t.Errorf("mounts %v: want kubelet-pods and state", mounts)
	}
	if len(ps.Tolerations) != 1 || ps.Tolerations[0]["operator"] != "Exists" || ps.Tolerations[0]["key"] != nil {
		t.Errorf("tolerations %v: want to tolerate every taint", ps.Tolerations)
	}

	// By default the state is a host directory that outlives the pod.
	b, err = render(t, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "path: /var/lib/backupd\n            type: DirectoryOrCreate") {
		t.Error("default state is not the host directory /var/lib/backupd")
	}
}

// The chart's PrometheusRule is the generated rule file, with the job the
// values name; its dashboards are the generated JSON.
func TestMonitoringFromGenerators(t *testing.T) {
	b, err := render(t, []string{"testdata/values-all.yaml"}, false, "metrics.job=backupd-agents")
	if err != nil {
		t.Fatal(err)
	}
	objs := objects(t, b)
	pr := find(objs, "PrometheusRule")
	if len(pr) != 1 {
		t.Fatalf("%d PrometheusRules", len(pr))
	}
	groups, _, _ := unstructured.NestedSlice(pr[0].Object, "spec", "groups")
	rules, err := os.ReadFile("../../alerts/backupd.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Groups []any `json:"groups"`
	}
	if err := yaml.Unmarshal(bytes.ReplaceAll(rules, []byte(`job="backupd"`), []byte(`job="backupd-agents"`)), &want); err != nil {
		t.Fatal(err)
	}
	gotJSON, _ := yaml.Marshal(groups)
	wantJSON, _ := yaml.Marshal(want.Groups)
	if len(groups) == 0 || !bytes.Equal(gotJSON, wantJSON) {
		t.Error("the chart's PrometheusRule groups are not alerts/backupd.rules.yml with job=\"backupd-agents\": run make alerts")
	}
	if strings.Contains(string(gotJSON), `job="backupd"`) {
		t.Error(`the PrometheusRule still selects job="backupd"`)
	}

	cms := find(objs, "ConfigMap")
	boards, err := filepath.Glob("../../dashboards/json/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(cms) != len(boards) || len(boards) == 0 {
		t.Fatalf("%d dashboard ConfigMaps, %d dashboards", len(cms), len(boards))
	}
	for _, path := range boards {
		want, _ := os.ReadFile(path)
		var found bool
		for _, cm := range cms {
			if cm.GetLabels()["grafana_dashboard"] != "1" {
				t.Errorf("ConfigMap %s has no grafana_dashboard label", cm.GetName())
			}
			got, ok, _ := unstructured.NestedString(cm.Object, "data", filepath.Base(path))
			if ok {
				found = true
				if strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
					t.Errorf("ConfigMap %s differs from %s: run make dashboards", cm.GetName(), path)
				}
			}
		}
		if !found {
			t.Errorf("no ConfigMap holds %s", filepath.Base(path))
		}
	}

	for _, kind := range []string{"ServiceMonitor", "PodMonitor"} {
		mon := find(objs, kind)
		if len(mon) != 1 {
			t.Fatalf("%d %ss", len(mon), kind)
		}
		s, _ := yaml.Marshal(mon[0].Object)
		if !strings.Contains(string(s), "replacement: backupd-agents\n") || !strings.Contains(string(s), "replacement: prod-eu-1\n") {
			t.Errorf("%s does not set job=backupd-agents and cluster=prod-eu-1:\n%s", kind, s)
		}
	}
}

// RBAC: no secret is readable except by name, and no rule uses a wildcard.
func TestRBACRendered(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			b, err := render(t, vs.files, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objects(t, b) {
				if o.GetKind() != "Role" && o.GetKind() != "ClusterRole" {
					continue
				}
				rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
				for _, r := range rules {
					rm := r.(map[string]any)
					s := fmt.Sprint(rm)
					if strings.Contains(s, "*") {
						t.Errorf("%s %s: wildcard in rule %v", o.GetKind(), o.GetName(), rm)
					}
					res := fmt.Sprint(rm["resources"])
					if strings.Contains(res, "secrets") && (o.GetKind() != "Role" || rm["resourceNames"] == nil) {
						t.Errorf("%s %s grants secrets without resourceNames: %v", o.GetKind(), o.GetName(), rm)
					}
				}
			}
		})
	}
}

// Every object the chart renders, CRDs first, is accepted by a real
// kube-apiserver with server-side apply, for each value set, with the
// samples; and the agents' ServiceAccount can do what it needs and no more.
func TestInstallOnAPIServer(t *testing.T) {
	helmBin(t)
	env := kubetest.Start(t)
	ctx := t.Context()
	var promCRDs bytes.Buffer
	files, err := filepath.Glob("testdata/prometheus-operator-crds/*.yaml")
	if err != nil || len(files) != 3 {
		t.Fatalf("prometheus-operator CRDs: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		promCRDs.WriteString("---\n")
		promCRDs.Write(b)
	}
	env.Apply(t, ctx, promCRDs.Bytes(), "test")
	env.Apply(t, ctx, []byte(`
apiVersion: v1
kind: Namespace
metadata:
  name: backupd
  labels:
    pod-security.kubernetes.io/enforce: privileged
---
apiVersion: v1
kind: Namespace
metadata: {name: payments}
---
apiVersion: v1
kind: Namespace
metadata: {name: consul}
`), "test")

	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			b, err := render(t, vs.files, true)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := env.TryApply(ctx, b, "helm")
			if err != nil {
				t.Fatal(err)
			}
			if want := len(objects(t, b)); len(objs) != want {
				t.Errorf("%d of %d objects applied", len(objs), want)
			}
		})
	}
	for _, f := range []string{"backupd/examples/backuprepository.yaml", "backupd/examples/backuppolicy.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.TryApply(ctx, b, "test"); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}

	t.Run("pod security", func(t *testing.T) { testPodSecurity(t, ctx, env) })
	t.Run("rbac", func(t *testing.T) { testRBAC(t, ctx, env) })
}

// testPodSecurity: the agent's pod needs the privileged level: under
// baseline the apiserver warns that its DaemonSet's pods would be refused
// for the host path (and for the capabilities), under privileged it does
// not.
func testPodSecurity(t *testing.T, ctx context.Context, env *kubetest.Env) {
	b, err := render(t, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var ds *unstructured.Unstructured
	for _, o := range objects(t, b) {
		if o.GetKind() == "DaemonSet" {
			ds = o
		}
	}
	for _, tc := range []struct {
		level string
		warn  []string
	}{
		{"baseline", []string{"hostPath volumes", "non-default capabilities"}},
		{"privileged", nil},
	} {
		t.Run(tc.level, func(t *testing.T) {
			ns := "psa-" + tc.level
			env.Apply(t, ctx, fmt.Appendf(nil, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels:\n    pod-security.kubernetes.io/enforce: %s\n", ns, tc.level), "test")
			var warnings warningRecorder
			cfg := rest.CopyConfig(env.Config)
			cfg.WarningHandler = &warnings
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			o := ds.DeepCopy()
			o.SetNamespace(ns)
			_, err = dyn.Resource(appsDaemonSets).Namespace(ns).Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "helm", Force: true})
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(warnings.msgs, "\n")
			if len(tc.warn) == 0 && got != "" {
				t.Errorf("warnings under %s: %s", tc.level, got)
			}
			for _, w := range tc.warn {
				if !strings.Contains(got, w) {
					t.Errorf("no warning about %q under %s; warnings:\n%s", w, tc.level, got)
				}
			}
		})
	}
}

type warningRecorder struct{ msgs []string }

func (w *warningRecorder) HandleWarningHeader(code int, agent, text string) {
	w.msgs = append(w.msgs, text)
}

// testRBAC asks the apiserver what the agents' ServiceAccount may do, as
// installed with values-all.yaml.
func testRBAC(t *testing.T, ctx context.Context, env *kubetest.Env) {
	b, err := render(t, []string{"testdata/values-all.yaml"}, false)
	if err != nil {
		t.Fatal(err)
	}
	env.Apply(t, ctx, b, "helm")
	// As the ServiceAccount: write a policy's status, as an agent does, but
	// not its spec.
	dyn, err := dynamic.NewForConfig(env.ConfigAs(namespace, "backupd"))
	if err != nil {
		t.Fatal(err)
	}
	policies := dyn.Resource(schema.GroupVersionResource{Group: "backupd.meshbackup.io", Version: "v1alpha1", Resource: "backuppolicies"}).Namespace("payments")
	status := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "backupd.meshbackup.io/v1alpha1", "kind": "BackupPolicy",
		"metadata": map[string]any{"name": "mesh-default", "namespace": "payments"},
		"status":   map[string]any{"volumes": []any{map[string]any{"name": "pvc/data-web-0", "node": "node-a"}}},
	}}
	if _, err := policies.ApplyStatus(ctx, "mesh-default", status, metav1.ApplyOptions{FieldManager: "backupd-agent/node-a"}); err != nil {
		t.Errorf("the agents' ServiceAccount cannot write a policy's status: %v", err)
	}
	spec := status.DeepCopy()
	delete(spec.Object, "status")
	_ = unstructured.SetNestedField(spec.Object, "1m", "spec", "rpo")
	if _, err := policies.Apply(ctx, "mesh-default", spec, metav1.ApplyOptions{FieldManager: "backupd-agent/node-a"}); !apierrors.IsForbidden(err) {
		t.Errorf("the agents' ServiceAccount changing a policy's spec: %v, want forbidden", err)
	}

	user := "system:serviceaccount:" + namespace + ":backupd"
	for _, tc := range []struct {
		verb, group, resource, sub, ns, name string
		allowed                              bool
	}{
		{"watch", "", "pods", "", "", "", true},
		{"list", "", "persistentvolumes", "", "", "", true},
		{"get", "", "nodes", "", "", "node-a", true},
		{"watch", "backupd.meshbackup.io", "backuppolicies", "", "", "", true},
		{"patch", "backupd.meshbackup.io", "backuppolicies", "status", "payments", "mesh-default", true},
		{"create", "", "events", "", "payments", "", true},
		{"create", "coordination.k8s.io", "leases", "", namespace, "", true},
		{"update", "coordination.k8s.io", "leases", "", namespace, "backupd", true},
		// The repository secrets of values-all.yaml, by name.
		{"get", "", "secrets", "", namespace, "backupd-repository", true},
		{"get", "", "secrets", "", namespace, "backupd-s3", true},
		{"get", "", "secrets", "", namespace, "backupd-ca", true},
		{"get", "", "secrets", "", namespace, "other-repo-secret", true},
		// And nothing else: not values-irsa.yaml's, applied before.
		{"get", "", "secrets", "", namespace, "backupd-password", false},
		{"get", "", "secrets", "", namespace, "some-other-secret", false},
		{"watch", "", "secrets", "", namespace, "backupd-s3", false},
		{"list", "", "secrets", "", namespace, "", false},
		{"get", "", "secrets", "", "payments", "backupd-repository", false},
		{"update", "backupd.meshbackup.io", "backuppolicies", "", "payments", "mesh-default", false},
		{"create", "backupd.meshbackup.io", "backuppolicies", "", "payments", "", false},
		{"delete", "", "pods", "", "payments", "web-0", false},
		{"create", "", "pods", "", namespace, "", false},
		{"create", "coordination.k8s.io", "leases", "", "default", "", false},
		{"get", "", "configmaps", "", namespace, "", false},
	} {
		name := fmt.Sprintf("%s %s/%s %s/%s", tc.verb, tc.resource, tc.sub, tc.ns, tc.name)
		t.Run(name, func(t *testing.T) {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   user,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: tc.verb, Group: tc.group, Resource: tc.resource, Subresource: tc.sub, Namespace: tc.ns, Name: tc.name,
				},
			}}
			got, err := env.Clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.Allowed != tc.allowed {
				t.Errorf("allowed = %v, want %v (%s)", got.Status.Allowed, tc.allowed, got.Status.Reason)
			}
		})
	}
}

var appsDaemonSets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}

// checkAgentFlags fails unless every flag the chart passes is one that
// `backupd agent` takes: a flag it does not know would crash-loop every
// agent pod.
func checkAgentFlags(t *testing.T, args []string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "backupd")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "../../backupd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build backupd: %v\n%s", err, out)
	}
	help, err := exec.CommandContext(t.Context(), bin, "agent", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("backupd agent --help: %v\n%s", err, help)
	}
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !strings.Contains(string(help), "--"+name+" ") {
			t.Errorf("the chart passes %q, which backupd agent --help does not list", a)
		}
	}
}
