// Command genrules writes the rule files generated from the SLO spec:
// alerts/backupd.rules.yml, its copy in the Helm chart
// (deploy/helm/backupd/files/backupd.rules.yml, the spec of the chart's
// PrometheusRule) and deploy/kubernetes/backupd-prometheusrule.yaml.
// Run it from the repository root (make alerts). Without flags it writes
// the committed files; for a cluster of your own, e.g. kube-prometheus-stack
// installed as release kube-prometheus-stack in namespace monitoring:
//
//	go run ./alerts/cmd/genrules -rules /dev/null -chart-rules "" \
//	    -prometheusrule backupd-prometheusrule.yaml \
//	    -job backupd -namespace monitoring -label release=kube-prometheus-stack
//
// Imports: package alerts only; no engine, collector or exporter code.
package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"sort"
	"strings"

	"github.com/meshbackup/backupd/alerts"
)

func main() {
	err := run(os.Args[1:], os.Stderr)
	if err == flag.ErrHelp {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "genrules:", err)
		os.Exit(1)
	}
}

// labelsFlag collects repeated -label NAME=VALUE flags over the defaults.
type labelsFlag map[string]string

func (l labelsFlag) String() string {
	var s []string
	for k, v := range l {
		s = append(s, k+"="+v)
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

func (l labelsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q is not NAME=VALUE", s)
	}
	l[k] = v
	return nil
}

func run(args []string, stderr io.Writer) error {
	o := alerts.DefaultOptions
	o.Labels = maps.Clone(o.Labels)
	fs := flag.NewFlagSet("genrules", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rules := fs.String("rules", "alerts/backupd.rules.yml", "Prometheus rule file to write")
	chart := fs.String("chart-rules", "deploy/helm/backupd/files/backupd.rules.yml", "copy of the rule file for the Helm chart (empty: none)")
	cr := fs.String("prometheusrule", "deploy/kubernetes/backupd-prometheusrule.yaml", "PrometheusRule manifest to write")
	fs.StringVar(&o.Job, "job", o.Job, "scrape job of backupd, selected by the rules on up and process_start_time_seconds")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "metadata.namespace of the PrometheusRule (empty: none, kubectl apply -n decides)")
	fs.Var(labelsFlag(o.Labels), "label", "NAME=VALUE label of the PrometheusRule, added to the defaults or replacing one; repeatable, e.g. -label release=kube-prometheus-stack")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	b, err := alerts.RuleFile(o)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*rules, b, 0o644); err != nil {
		return err
	}
	if *chart != "" {
		if err := os.WriteFile(*chart, b, 0o644); err != nil {
			return err
		}
	}
	b, err = alerts.PrometheusRule(o)
	if err != nil {
		return err
	}
	return os.WriteFile(*cr, b, 0o644)
}
