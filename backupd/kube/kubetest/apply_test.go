package kubetest

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []string // kind/name of each object
		wantErr string
	}{
		{"documents", "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n# comment only\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: a}\n", []string{"Namespace/a", "ConfigMap/b"}, ""},
		{"list", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b}\n", []string{"Namespace/a", "Namespace/b"}, ""},
		{"json", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}`, []string{"Namespace/a"}, ""},
		{"no kind", "apiVersion: v1\nmetadata: {name: a}\n", nil, "document 0: no kind"},
		{"bad yaml", "apiVersion: v1\nkind: [\n", nil, "decode document 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Decode([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.GetKind()+"/"+o.GetName())
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
