package dashboards

import "strings"

// Concrete returns a panel query with the dashboard's variables replaced by
// values Prometheus accepts: every cluster, instance, policy, tool and
// workload, a one-minute rate interval and a one-hour range. Tests use it
// to parse queries and to run them for real.
func Concrete(expr string) string {
	return strings.NewReplacer(
		"$__rate_interval", "1m",
		"$__interval", "15s",
		"$__range", "1h",
		"$cluster", ".*",
		"$instance", ".*",
		"$namespace", ".*",
		"$policy", ".*",
		"$tool", ".*",
		"$workload", ".*",
	).Replace(expr)
}
