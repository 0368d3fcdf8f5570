package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/meshbackup/backupd/alerts"
)

// The flags set the job the rules select, and the namespace and labels a
// kube-prometheus-stack Prometheus selects the PrometheusRule by; without
// them the committed files come out.
func TestFlags(t *testing.T) {
	dir := t.TempDir()
	rules, cr, chart := filepath.Join(dir, "rules.yml"), filepath.Join(dir, "cr.yaml"), filepath.Join(dir, "chart.yml")
	err := run([]string{"-rules", rules, "-chart-rules", chart, "-prometheusrule", cr,
		"-job", "backupd-prod", "-namespace", "monitoring",
		"-label", "release=kube-prometheus-stack", "-label", "role=backup-rules"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Metadata struct {
			Name      string            `yaml:"name"`
			Namespace string            `yaml:"namespace"`
			Labels    map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			Groups []alerts.Group `yaml:"groups"`
		} `yaml:"spec"`
	}
	b, err := os.ReadFile(cr)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.Metadata.Namespace != "monitoring" {
		t.Errorf("namespace %q", pr.Metadata.Namespace)
	}
	want := map[string]string{"app.kubernetes.io/name": "backupd", "prometheus": "k8s", "role": "backup-rules", "release": "kube-prometheus-stack"}
	if len(pr.Metadata.Labels) != len(want) {
		t.Errorf("labels %v, want %v", pr.Metadata.Labels, want)
	}
	for k, v := range want {
		if pr.Metadata.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, pr.Metadata.Labels[k], v)
		}
	}
	rb, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{string(b), string(rb)} {
		if strings.Contains(out, `job="backupd"`) || !strings.Contains(out, `job="backupd-prod"`) {
			t.Errorf("the job selector is not job=\"backupd-prod\" throughout:\n%s", out)
		}
	}

	// No flags: the committed files, which DefaultOptions must still give
	// (the labels flag must not have changed them).
	if err := run([]string{"-rules", rules, "-chart-rules", chart, "-prometheusrule", cr}, io.Discard); err != nil {
		t.Fatal(err)
	}
	for got, committed := range map[string]string{
		rules: "../../backupd.rules.yml",
		chart: "../../../deploy/helm/backupd/files/backupd.rules.yml",
		cr:    "../../../deploy/kubernetes/backupd-prometheusrule.yaml",
	} {
		g, _ := os.ReadFile(got)
		c, err := os.ReadFile(committed)
		if err != nil {
			t.Fatal(err)
		}
		if string(g) != string(c) {
			t.Errorf("genrules without flags differs from %s", committed)
		}
	}

	for _, bad := range [][]string{{"-label", "release"}, {"-label", "=x"}, {"-job", ""}, {"extra"}} {
		args := append([]string{"-rules", rules, "-chart-rules", chart, "-prometheusrule", cr}, bad...)
		if err := run(args, io.Discard); err == nil {
			t.Errorf("genrules %v: no error", bad)
		}
	}
}
