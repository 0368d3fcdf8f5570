package workload

import (
	"math"
	"strconv"
)

var (
	clusterCounters = []string{"upstream_cx_total", "upstream_cx_connect_fail", "upstream_cx_destroy_local",
		"upstream_cx_destroy_remote", "upstream_cx_rx_bytes_total", "upstream_cx_tx_bytes_total", "upstream_rq_total",
		"upstream_rq_completed", "upstream_rq_retry", "upstream_rq_timeout", "upstream_rq_pending_total",
		"upstream_rq_2xx", "upstream_rq_4xx", "upstream_rq_5xx", "upstream_rq_200", "upstream_rq_404", "upstream_rq_503",
		"lb_healthy_panic", "membership_change", "update_attempt", "update_success", "update_no_rebuild",
		"retry_or_shadow_abandoned", "upstream_flow_control_paused_reading_total", "default_total_match_count"}
	clusterGauges = []string{"upstream_cx_active", "upstream_rq_active", "upstream_rq_pending_active",
		"membership_healthy", "membership_total", "membership_degraded", "circuit_breakers_default_cx_open", "max_host_weight"}
	clusterHistograms = []string{"upstream_cx_connect_ms", "upstream_rq_time"}
	histogramBuckets  = []string{"0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
		"10000", "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf"}
	serverGauges = []struct {
		name string
		lo   int
		hi   int
	}{{"envoy_server_memory_allocated", 40 << 20, 400 << 20}, {"envoy_server_memory_heap_size", 64 << 20, 512 << 20},
		{"envoy_server_memory_physical_size", 64 << 20, 600 << 20}, {"envoy_server_total_connections", 10, 5000},
		{"envoy_server_parent_connections", 0, 0}, {"envoy_server_stats_recent_lookups", 1000, 900000},
		{"envoy_server_concurrency", 2, 2}, {"envoy_server_live", 1, 1}, {"envoy_server_state", 0, 0},
		{"envoy_server_hot_restart_epoch", 0, 0}, {"envoy_server_days_until_first_cert_expiring", 0, 1}}
	istioCodes = []string{"200", "404", "503"}
)

// genStats renders a Prometheus text dump. Series and their rates depend only
// on the proxy; values depend on the simulated clock, so almost every number
// changes from one rewrite to the next. Counters start at epochMs.
func genStats(opt Options, p *proxyInfo, clockMs, epochMs int64) []byte {
	sr := newRand(opt.Seed, tagStats, uint64(p.idx))                                       // structure & rates
	vr := newRand(opt.Seed, tagStatsStep, uint64(p.idx), uint64(clockMs), uint64(epochMs)) // noise
	mins := float64(clockMs-epochMs) / minuteMs
	if mins < 0 {
		mins = 0
	}
	ups := make([]upstream, p.clusters)
	names := make([][]byte, p.clusters)
	for k := range ups {
		ups[k] = upstreamFor(opt.Seed, p.idx, k)
		names[k] = []byte(`{cluster_name="` + ups[k].cluster() + `"} `)
	}
	b := make([]byte, 0, p.clusters*9000+8192)
	counter := func() int64 {
		var rate float64
		switch x := sr.IntN(20); {
		case x < 2:
			rate = 0
		case x < 4:
			rate = sr.Float64()
		default:
			rate = betweenF(sr, 1, 600)
		}
		return int64(rate * mins)
	}

	for _, g := range serverGauges {
		b = append(b, "# TYPE "...)
		b = append(b, g.name...)
		b = append(b, " gauge\n"...)
		b = append(b, g.name...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(between(vr, g.lo, g.hi)), 10)
		b = append(b, '\n')
	}
	b = append(b, "# TYPE envoy_server_uptime gauge\nenvoy_server_uptime "...)
	b = strconv.AppendInt(b, int64(mins*60), 10)
	b = append(b, '\n')

	for _, c := range clusterCounters {
		b = append(b, "# TYPE envoy_cluster_"...)
		b = append(b, c...)
		b = append(b, " counter\n"...)
		for k := range ups {
			b = append(b, "envoy_cluster_"...)
			b = append(b, c...)
			b = append(b, names[k]...)
			b = strconv.AppendInt(b, counter(), 10)
			b = append(b, '\n')
		}
	}
	for _, c := range clusterGauges {
		b = append(b, "# TYPE envoy_cluster_"...)
		b = append(b, c...)
		b = append(b, " gauge\n"...)
		for k := range ups {
			b = append(b, "envoy_cluster_"...)
			b = append(b, c...)
			b = append(b, names[k]...)
			b = strconv.AppendInt(b, int64(vr.IntN(1+sr.IntN(1000))), 10)
			b = append(b, '\n')
		}
	}
	cdf := make([]float64, len(histogramBuckets))
	for _, h := range clusterHistograms {
		b = append(b, "# TYPE envoy_cluster_"...)
		b = append(b, h...)
		b = append(b, " histogram\n"...)
		for k := range ups {
			count := int64(betweenF(sr, 1, 600) * mins)
			mean := betweenF(sr, 1, 400)
			for i := range cdf {
				le := 0.5 * math.Pow(2.2, float64(i))
				cdf[i] = 1 - math.Exp(-le/mean)
			}
			cdf[len(cdf)-1] = 1
			lbl := names[k][:len(names[k])-2]
			for i, le := range histogramBuckets {
				b = append(b, "envoy_cluster_"...)
				b = append(b, h...)
				b = append(b, "_bucket"...)
				b = append(b, lbl...)
				b = append(b, `,le="`...)
				b = append(b, le...)
				b = append(b, `"} `...)
				b = strconv.AppendInt(b, int64(float64(count)*cdf[i]), 10)
				b = append(b, '\n')
			}
			b = append(b, "envoy_cluster_"...)
			b = append(b, h...)
			b = append(b, "_sum"...)
			b = append(b, names[k]...)
			b = strconv.AppendFloat(b, math.Round(float64(count)*mean*(0.9+0.2*vr.Float64())*10)/10, 'f', -1, 64)
			b = append(b, '\n')
			b = append(b, "envoy_cluster_"...)
			b = append(b, h...)
			b = append(b, "_count"...)
			b = append(b, names[k]...)
			b = strconv.AppendInt(b, count, 10)
			b = append(b, '\n')
		}
	}
	b = append(b, "# TYPE istio_requests_total counter\n"...)
	for k, u := range ups {
		if k%4 != 0 {
			continue
		}
		for _, code := range istioCodes {
			b = append(b, `istio_requests_total{connection_security_policy="mutual_tls",destination_app="`...)
			b = append(b, u.svc...)
			b = append(b, `",destination_canonical_service="`...)
			b = append(b, u.svc...)
			b = append(b, `",destination_service="`...)
			b = append(b, u.host()...)
			b = append(b, `",destination_service_namespace="`...)
			b = append(b, u.ns...)
			b = append(b, `",destination_workload="`...)
			b = append(b, u.svc...)
			b = append(b, `",reporter="source",request_protocol="http",response_code="`...)
			b = append(b, code...)
			b = append(b, `",response_flags="-",source_app="`...)
			b = append(b, p.app...)
			b = append(b, `",source_principal="spiffe://cluster.local/ns/`...)
			b = append(b, p.ns...)
			b = append(b, "/sa/"...)
			b = append(b, p.app...)
			b = append(b, `",source_workload="`...)
			b = append(b, p.app...)
			b = append(b, `",source_workload_namespace="`...)
			b = append(b, p.ns...)
			b = append(b, `"} `...)
			b = strconv.AppendInt(b, counter(), 10)
			b = append(b, '\n')
		}
	}
	return b
}
