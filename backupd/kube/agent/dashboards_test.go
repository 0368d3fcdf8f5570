package agent_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshbackup/backupd/dashboards"
	"github.com/meshbackup/backupd/internal/promtest"
)

// serveMetrics serves an agent's registry at http://ADDR/metrics on a free
// 127.0.0.1 port until the test ends, as the agent's exporter does.
func serveMetrics(t *testing.T, ra *runningAgent) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(ra.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// pvcPanelQueries are the dashboards' queries that need the node agent's
// backupd_volume_info (the per-PVC table), keyed by board/panel/column.
func pvcPanelQueries() map[string]string {
	out := map[string]string{}
	for _, b := range dashboards.Boards() {
		for _, p := range b.Panels {
			for i, q := range p.Queries {
				if strings.Contains(q.Expr, "backupd_volume_info") {
					col := fmt.Sprint(i)
					if i < len(p.Columns) {
						col = p.Columns[i].Title
					}
					out[b.UID+"/"+p.Title+"/"+col] = q.Expr
				}
			}
		}
	}
	return out
}

// inNamespace is a panel query made concrete with the namespace variable
// set to ns.
func inNamespace(expr, ns string) string {
	return dashboards.Concrete(strings.ReplaceAll(expr, "$namespace", ns))
}

// checkPVCDashboard has a real Prometheus, with the SLO rules, scrape the
// agents, and checks the dashboards' Kubernetes parts on it: every column
// of the per-PVC table has one row per PVC the agents back up (want: PVC →
// node), labelled with kube-state-metrics' names, for the test namespace
// and none for another; the policy variable lists the namespace's policies
// and the namespace variable's series name it.
func checkPVCDashboard(t *testing.T, want map[string]string, agents ...*runningAgent) {
	t.Helper()
	var targets []string
	for _, ra := range agents {
		targets = append(targets, serveMetrics(t, ra))
	}
	prom := promtest.Start(t, promtest.Options{Targets: targets, RuleFiles: []string{"../../../alerts/backupd.rules.yml"}})
	queries := pvcPanelQueries()
	if len(queries) < 6 {
		t.Fatalf("the per-PVC table has %d queries, want 6 or more", len(queries))
	}
	eventually(t, "the per-PVC table on Prometheus", 60*time.Second, func() (bool, string) {
		for name, q := range queries {
			res, err := prom.Query(inNamespace(q, testNS))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got := map[string]string{}
			for _, s := range res {
				if s.Metric["namespace"] != testNS || s.Metric["pod"] == "" {
					t.Fatalf("%s: row %v lacks the Kubernetes labels", name, s.Metric)
				}
				if _, dup := got[s.Metric["persistentvolumeclaim"]]; dup {
					t.Fatalf("%s: two rows for PVC %s: %v", name, s.Metric["persistentvolumeclaim"], res)
				}
				got[s.Metric["persistentvolumeclaim"]] = s.Metric["node"]
			}
			for pvc, node := range want {
				if got[pvc] != node {
					return false, fmt.Sprintf("%s: PVC %s on node %q, want %q (rows %v)", name, pvc, got[pvc], node, got)
				}
			}
		}
		return true, ""
	})
	for name, q := range queries {
		if res, err := prom.Query(inNamespace(q, "other")); err != nil || len(res) != 0 {
			t.Errorf("%s in namespace other: %v %v, want no rows", name, res, err)
		}
	}
	// The last good backup is recent, and the RPO met, for every PVC.
	res, err := prom.Query(inNamespace(`time() - max by (persistentvolumeclaim) (backupd_last_backup_success_timestamp_seconds * on (cluster, instance, policy) group_left (persistentvolumeclaim) backupd_volume_info{namespace=~"$namespace"}) < 600`, testNS))
	if err != nil || len(res) < len(want) {
		t.Errorf("PVCs with a good backup in the last 10 minutes: %v %v, want %d", res, err, len(want))
	}
	// The variables.
	policies := func(ns string) []string {
		res, err := prom.Query(inNamespace(dashboards.PolicyVariableQuery, ns))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range res {
			out = append(out, s.Metric["policy"])
		}
		slices.Sort(out)
		return out
	}
	got := policies(testNS)
	for pvc := range want {
		if !slices.Contains(got, testNS+"_"+pvc) {
			t.Errorf("policy variable in namespace %s: %v, lacks %s", testNS, got, testNS+"_"+pvc)
		}
	}
	if all := policies(".*"); !slices.Equal(all, got) {
		t.Errorf("policy variable for every namespace: %v, want %v (every policy here is a volume in %s)", all, got, testNS)
	}
	if other := policies("other"); len(other) != 0 {
		t.Errorf("policy variable in namespace other: %v, want none", other)
	}
	res, err = prom.Query(`count by (namespace) (backupd_volume_info)`)
	if err != nil || len(res) != 1 || res[0].Metric["namespace"] != testNS {
		t.Errorf("namespace variable's series: %v %v, want only %s", res, err, testNS)
	}
}
