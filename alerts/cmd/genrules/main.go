// Command genrules writes the rule files generated from the SLO spec:
// alerts/backupd.rules.yml and deploy/kubernetes/backupd-prometheusrule.yaml.
// Run it from the repository root (make alerts).
//
// Imports: package alerts only; no engine, collector or exporter code.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/meshbackup/backupd/alerts"
)

func main() {
	rules := flag.String("rules", "alerts/backupd.rules.yml", "Prometheus rule file to write")
	cr := flag.String("prometheusrule", "deploy/kubernetes/backupd-prometheusrule.yaml", "PrometheusRule manifest to write")
	flag.Parse()
	if err := run(*rules, *cr); err != nil {
		fmt.Fprintln(os.Stderr, "genrules:", err)
		os.Exit(1)
	}
}

func run(rulesPath, crPath string) error {
	b, err := alerts.RuleFile(alerts.DefaultOptions)
	if err != nil {
		return err
	}
	if err := os.WriteFile(rulesPath, b, 0o644); err != nil {
		return err
	}
	b, err = alerts.PrometheusRule(alerts.DefaultOptions)
	if err != nil {
		return err
	}
	return os.WriteFile(crPath, b, 0o644)
}
