package dashboards

import "strings"

// Concrete returns a panel query with the dashboard's variables replaced by
// values Prometheus accepts: every cluster, instance and policy, a
// one-minute rate interval. Tests use it to parse queries and to run them
// for real.
func Concrete(expr string) string {
	return strings.NewReplacer(
		"$__rate_interval", "1m",
		"$__interval", "15s",
		"$__range", "1h",
		"$cluster", ".*",
		"$instance", ".*",
		"$policy", ".*",
	).Replace(expr)
}
