package v1alpha1_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshbackup/backupd/backupd/kube/api/v1alpha1"
	"github.com/meshbackup/backupd/backupd/kube/kubetest"
)

const namespaces = `
apiVersion: v1
kind: Namespace
metadata: {name: payments}
---
apiVersion: v1
kind: Namespace
metadata: {name: consul}
---
apiVersion: v1
kind: Namespace
metadata: {name: backupd}
`

// policy is a valid BackupPolicy in namespace payments with the top-level
// spec keys of spec set (a nil value removes the key).
func policy(name string, spec map[string]any) string {
	base := map[string]any{
		"repository":  "mesh-backups",
		"meshDefault": true,
		"schedule":    "*/15 * * * *",
		"rpo":         "30m",
	}
	for k, v := range spec {
		if v == nil {
			delete(base, k)
			continue
		}
		base[k] = v
	}
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "backupd.meshbackup.io/v1alpha1",
		"kind":       "BackupPolicy",
		"metadata":   map[string]any{"name": name, "namespace": "payments"},
		"spec":       base,
	})
	return string(b)
}

// repository is a valid BackupRepository with the top-level spec keys of
// spec set (a nil value removes the key).
func repository(name string, spec map[string]any) string {
	base := map[string]any{
		"s3": map[string]any{
			"bucket":            "mesh-backups",
			"endpoint":          "https://minio.storage.svc:9000",
			"useServiceAccount": true,
		},
		"passwordSecretRef": map[string]any{"namespace": "backupd", "name": "pw", "key": "password"},
	}
	for k, v := range spec {
		if v == nil {
			delete(base, k)
			continue
		}
		base[k] = v
	}
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "backupd.meshbackup.io/v1alpha1",
		"kind":       "BackupRepository",
		"metadata":   map[string]any{"name": name},
		"spec":       base,
	})
	return string(b)
}

// The apiserver, with the committed CRDs, accepts the examples and good
// variants, refuses bad policies and repositories naming the field, serves
// the status subresource and the printer columns of `kubectl get`.
func TestCRDsOnAPIServer(t *testing.T) {
	env := kubetest.Start(t)
	ctx := t.Context()
	env.Apply(t, ctx, []byte(namespaces), "test")
	for _, f := range []string{"backuprepository.yaml", "backuppolicy.yaml"} {
		b, err := os.ReadFile(filepath.Join(env.RepoRoot, "deploy/helm/backupd/examples", f))
		if err != nil {
			t.Fatal(err)
		}
		env.Apply(t, ctx, b, "test")
	}

	t.Run("accepted", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			doc  string
		}{
			{"seconds-cron", policy("seconds-cron", map[string]any{"schedule": "0 */5 * * * *"})},
			{"every", policy("every", map[string]any{"schedule": "@every 10m", "rpo": "1h30m", "rto": "90s"})},
			{"tz", policy("tz", map[string]any{"schedule": "CRON_TZ=Europe/Berlin 0 3 * * *", "rpo": "25h"})},
			{"selector", policy("selector", map[string]any{"meshDefault": nil, "selector": map[string]any{
				"podSelector": map[string]any{"matchLabels": map[string]any{"app": "web"}}}})},
			{"drill-off", policy("drill-off", map[string]any{"drill": map[string]any{"enabled": false}})},
			{"retention-one", policy("retention-one", map[string]any{"retention": map[string]any{"keepMonthly": 12}})},
			{"repo-local", repository("repo-local", map[string]any{"s3": nil, "local": map[string]any{"path": "/var/lib/backupd/test-repo"}})},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := env.TryApply(ctx, []byte(tc.doc), "test"); err != nil {
					t.Errorf("refused: %v", err)
				}
			})
		}
	})

	t.Run("refused", func(t *testing.T) {
		s3 := func(m map[string]any) map[string]any {
			base := map[string]any{"bucket": "mesh-backups", "useServiceAccount": true}
			for k, v := range m {
				if v == nil {
					delete(base, k)
					continue
				}
				base[k] = v
			}
			return base
		}
		for _, tc := range []struct {
			name    string
			doc     string
			field   string // the cause's field
			message string // in the cause's message
		}{
			{"negative rpo", policy("bad", map[string]any{"rpo": "-5m"}), "spec.rpo", "spec.rpo must be a positive duration"},
			{"zero rpo", policy("bad", map[string]any{"rpo": "0s"}), "spec.rpo", "spec.rpo must be a positive duration"},
			{"rpo not a duration", policy("bad", map[string]any{"rpo": "5 minutes"}), "spec.rpo", "should match"},
			{"rpo in days", policy("bad", map[string]any{"rpo": "1d"}), "spec.rpo", "should match"},
			{"negative rto", policy("bad", map[string]any{"rto": "-1m"}), "spec.rto", "spec.rto must be a positive duration"},
			{"missing repository", policy("bad", map[string]any{"repository": nil}), "spec.repository", "Required value"},
			{"bad repository name", policy("bad", map[string]any{"repository": "Mesh_Backups"}), "spec.repository", "spec.repository must be the name of a BackupRepository"},
			{"missing schedule", policy("bad", map[string]any{"schedule": nil}), "spec.schedule", "Required value"},
			{"bad schedule", policy("bad", map[string]any{"schedule": "every 5 minutes"}), "spec.schedule", "spec.schedule must be a cron expression"},
			{"four cron fields", policy("bad", map[string]any{"schedule": "*/5 * * *"}), "spec.schedule", "spec.schedule must be a cron expression"},
			{"retention all zero", policy("bad", map[string]any{"retention": map[string]any{"keepLast": 0, "keepDaily": 0}}), "spec.retention", "at least one of keepLast, keepHourly, keepDaily, keepWeekly and keepMonthly must be greater than 0"},
			{"retention empty", policy("bad", map[string]any{"retention": map[string]any{}}), "spec.retention", "must be greater than 0"},
			{"retention negative", policy("bad", map[string]any{"retention": map[string]any{"keepLast": -1, "keepDaily": 3}}), "spec.retention.keepLast", "greater than or equal to 0"},
			{"selector and meshDefault", policy("bad", map[string]any{"selector": map[string]any{"podSelector": map[string]any{}}}), "spec", "set exactly one of spec.selector and spec.meshDefault"},
			{"neither selector nor meshDefault", policy("bad", map[string]any{"meshDefault": nil}), "spec", "set exactly one of spec.selector and spec.meshDefault"},
			{"empty selector", policy("bad", map[string]any{"meshDefault": nil, "selector": map[string]any{}}), "spec.selector", "spec.selector: set spec.selector.persistentVolumeClaimSelector, spec.selector.podSelector or both"},
			{"drill without schedule", policy("bad", map[string]any{"drill": map[string]any{}}), "spec.drill", "spec.drill.schedule is required"},
			{"bad drill schedule", policy("bad", map[string]any{"drill": map[string]any{"schedule": "daily"}}), "spec.drill.schedule", "spec.drill.schedule must be a cron expression"},
			{"verify read 0%", policy("bad", map[string]any{"verify": map[string]any{"schedule": "@daily", "readPercent": 0}}), "spec.verify.readPercent", "greater than or equal to 1"},
			{"unknown field", policy("bad", map[string]any{"rpoo": "5m"}), "", ".spec.rpoo: field not declared in schema"},
			{"repo s3 and local", repository("bad", map[string]any{"local": map[string]any{"path": "/x"}}), "spec", "exactly one of spec.s3 and spec.local"},
			{"repo neither", repository("bad", map[string]any{"s3": nil}), "spec", "exactly one of spec.s3 and spec.local"},
			{"repo endpoint without scheme", repository("bad", map[string]any{"s3": s3(map[string]any{"endpoint": "minio:9000"})}), "spec.s3.endpoint", "spec.s3.endpoint must be a URL with scheme http:// or https://"},
			{"repo bucket name", repository("bad", map[string]any{"s3": s3(map[string]any{"bucket": "Mesh_Backups"})}), "spec.s3.bucket", "spec.s3.bucket must be a bucket name"},
			{"repo prefix slash", repository("bad", map[string]any{"s3": s3(map[string]any{"prefix": "/prod"})}), "spec.s3.prefix", "spec.s3.prefix must not start or end with a slash"},
			{"repo no credentials", repository("bad", map[string]any{"s3": s3(map[string]any{"useServiceAccount": nil})}), "spec.s3", "set exactly one of spec.s3.credentialsSecretRef and spec.s3.useServiceAccount"},
			{"repo both credentials", repository("bad", map[string]any{"s3": s3(map[string]any{"credentialsSecretRef": map[string]any{"namespace": "backupd", "name": "s3"}})}), "spec.s3", "set exactly one of spec.s3.credentialsSecretRef and spec.s3.useServiceAccount"},
			{"repo pathStyle", repository("bad", map[string]any{"s3": s3(map[string]any{"pathStyle": "yes"})}), "spec.s3.pathStyle", "Unsupported value"},
			{"repo no password", repository("bad", map[string]any{"passwordSecretRef": nil}), "spec.passwordSecretRef", "Required value"},
			{"repo password without key", repository("bad", map[string]any{"passwordSecretRef": map[string]any{"namespace": "backupd", "name": "pw"}}), "spec.passwordSecretRef.key", "Required value"},
			{"repo local relative", repository("bad", map[string]any{"s3": nil, "local": map[string]any{"path": "repo"}}), "spec.local.path", "spec.local.path must be an absolute path"},
			{"repo timeout", repository("bad", map[string]any{"timeout": "-30s"}), "spec.timeout", "spec.timeout must be a positive duration"},
			{"repo uploads", repository("bad", map[string]any{"uploads": 0}), "spec.uploads", "greater than or equal to 1"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := env.TryApply(ctx, []byte(tc.doc), "test")
				if err == nil {
					t.Fatal("accepted")
				}
				var se *apierrors.StatusError
				if !errors.As(err, &se) {
					t.Fatalf("not an apiserver refusal: %v", err)
				}
				if tc.field == "" {
					if !strings.Contains(err.Error(), tc.message) {
						t.Errorf("error %q does not say %q", err, tc.message)
					}
					return
				}
				if !apierrors.IsInvalid(err) {
					t.Errorf("refused as %s, want Invalid: %v", apierrors.ReasonForError(err), err)
				}
				if !strings.Contains(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.message) {
					t.Errorf("error does not name %s with %q:\n%v", tc.field, tc.message, err)
				}
				var found bool
				for _, c := range se.ErrStatus.Details.Causes {
					if c.Field == tc.field && strings.Contains(c.Message, tc.message) {
						found = true
					}
				}
				if !found {
					t.Errorf("no cause on field %s saying %q: %+v", tc.field, tc.message, se.ErrStatus.Details.Causes)
				}
			})
		}
	})

	t.Run("status", func(t *testing.T) { testStatus(t, ctx, env) })
}

// testStatus writes a policy's status through the subresource, as an agent
// does, and reads it back as `kubectl get backuppolicies` shows it.
func testStatus(t *testing.T, ctx context.Context, env *kubetest.Env) {
	gvr := v1alpha1.GroupVersion.WithResource(v1alpha1.BackupPolicyResource)
	ri := env.Dynamic.Resource(gvr).Namespace("payments")
	u, err := ri.Get(ctx, "mesh-default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var p v1alpha1.BackupPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
		t.Fatal(err)
	}
	if p.Spec.Drill == nil || p.Spec.Drill.Enabled == nil || !*p.Spec.Drill.Enabled {
		t.Errorf("drill.enabled not defaulted to true: %+v", p.Spec.Drill)
	}
	backup := metav1.NewTime(time.Now().Add(-5 * time.Minute).Truncate(time.Second))
	p.Status = v1alpha1.BackupPolicyStatus{
		ObservedGeneration: p.Generation,
		LastBackupTime:     &backup,
		VolumeCount:        2,
		Conditions: []metav1.Condition{
			{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "VolumesSelected", Message: "2 volumes", LastTransitionTime: backup},
			{Type: v1alpha1.ConditionRPOMet, Status: metav1.ConditionTrue, Reason: "Fresh", LastTransitionTime: backup},
			{Type: v1alpha1.ConditionDrillPassed, Status: metav1.ConditionFalse, Reason: "DrillFailed", Message: "file a/b differs", LastTransitionTime: backup},
		},
		Volumes: []v1alpha1.VolumeStatus{
			{Name: "pvc/data-web-0", Namespace: "payments", PersistentVolumeClaim: "data-web-0", Pod: "web-0", Volume: "data", Node: "node-a", LastBackupTime: &backup, LastSnapshotID: "4f1c", LastDrillTime: &backup, LastDrillResult: v1alpha1.DrillFailed, LastError: "drill: file a/b differs"},
			{Name: "pod/web-0/istio-envoy", Namespace: "payments", Pod: "web-0", Volume: "istio-envoy", Node: "node-a", LastBackupTime: &backup},
		},
	}
	p.Spec.RPO = metav1.Duration{Duration: time.Hour} // a status write must not change the spec
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ri.UpdateStatus(ctx, &unstructured.Unstructured{Object: obj}, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status: %v", err)
	}
	got, err := ri.Get(ctx, "mesh-default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rpo, _, _ := unstructured.NestedString(got.Object, "spec", "rpo"); rpo != "30m" {
		t.Errorf("spec.rpo after a status update = %q, want 30m unchanged", rpo)
	}
	vols, _, _ := unstructured.NestedSlice(got.Object, "status", "volumes")
	if len(vols) != 2 {
		t.Errorf("status.volumes has %d entries, want 2", len(vols))
	}

	// What kubectl get shows: the server's Table rendering of the printer
	// columns.
	var table metav1.Table
	raw, err := env.Clientset.Discovery().RESTClient().Get().
		AbsPath("/apis/backupd.meshbackup.io/v1alpha1/namespaces/payments/backuppolicies").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").
		DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, c := range table.ColumnDefinitions {
		if c.Priority == 0 {
			cols = append(cols, c.Name)
		}
	}
	want := []string{"Name", "Repository", "Schedule", "RPO", "Ready", "RPOMet", "DrillPassed", "Last Backup", "Volumes"}
	if strings.Join(cols, ",") != strings.Join(want, ",") {
		t.Errorf("kubectl get columns %v, want %v", cols, want)
	}
	for _, r := range table.Rows {
		if len(r.Cells) < len(want) || r.Cells[0] != "mesh-default" {
			continue
		}
		got := []any{r.Cells[1], r.Cells[2], r.Cells[3], r.Cells[4], r.Cells[5], r.Cells[6], r.Cells[7], r.Cells[8]}
		wantRow := []any{"mesh-backups", "*/15 * * * *", "30m", "True", "True", "False", "5m", float64(2)}
		for i := range got {
			if got[i] != wantRow[i] {
				t.Errorf("kubectl get %s = %v, want %v", want[i+1], got[i], wantRow[i])
			}
		}
		return
	}
	t.Errorf("no row for mesh-default in %+v", table.Rows)
}
