package workload

import (
	"encoding/base64"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

func tsRFC(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

// upstream is one service a proxy talks to.
type upstream struct {
	svc, ns string
	port    int
}

func (u upstream) host() string { return u.svc + "." + u.ns + ".svc.cluster.local" }
func (u upstream) cluster() string {
	return "outbound|" + strconv.Itoa(u.port) + "||" + u.host()
}

// upstreamFor is the k-th upstream of a proxy; config dumps, stats and xDS
// files use the same list.
func upstreamFor(seed uint64, proxy, k int) upstream {
	r := newRand(seed, tagProxy, uint64(proxy), uint64(k))
	u := upstream{svc: pick(r, serviceNames), ns: pick(r, namespaces), port: ports[r.IntN(len(ports))]}
	if k >= len(serviceNames) {
		u.svc += "-" + strconv.Itoa(k/len(serviceNames))
	}
	return u
}

// ---------------------------------------------------------------- config dump

func genConfigDump(opt Options, p *proxyInfo, target int, clockMs int64) []byte {
	r := newRand(opt.Seed, tagConfig, uint64(p.idx))
	w := &jsonw{b: make([]byte, 0, target+64<<10)}
	w.obj()
	w.k("configs").arr()

	w.e().obj()
	w.kv("@type", "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump")
	w.k("bootstrap").obj()
	writeNode(w, r, opt, p)
	w.endObj()
	w.kv("last_updated", tsRFC(clockMs-int64(p.ageMin*minuteMs)))
	w.endObj()

	w.e().obj()
	w.kv("@type", "type.googleapis.com/envoy.admin.v3.ClustersConfigDump")
	w.kvs("version_info", tsRFC(clockMs-int64(r.IntN(3600_000))), "/", strconv.Itoa(between(r, 10, 999)))
	w.k("dynamic_active_clusters").arr()
	k := 0
	trustedCA := strings.ReplaceAll(string(appendPEM(nil, "CERTIFICATE", fakeDER(newRand(opt.Seed, tagRoot, 2), 980))), "\n", `\n`)
	for w.size() < target*55/100 {
		writeCluster(w, r, upstreamFor(opt.Seed, p.idx, k), trustedCA, clockMs)
		k++
	}
	w.endArr()
	w.endObj()

	w.e().obj()
	w.kv("@type", "type.googleapis.com/envoy.admin.v3.ListenersConfigDump")
	w.k("dynamic_listeners").arr()
	for i := 0; w.size() < target*78/100; i++ {
		writeListener(w, r, upstreamFor(opt.Seed, p.idx, i%max(k, 1)), clockMs)
	}
	w.endArr()
	w.endObj()

	w.e().obj()
	w.kv("@type", "type.googleapis.com/envoy.admin.v3.RoutesConfigDump")
	w.k("dynamic_route_configs").arr()
	for i := 0; w.size() < target-2048; i++ { // the secrets below add > 2 KiB
		writeRouteConfig(w, r, opt, p, i, clockMs)
	}
	w.endArr()
	w.endObj()

	w.e().obj()
	w.kv("@type", "type.googleapis.com/envoy.admin.v3.SecretsConfigDump")
	w.k("dynamic_active_secrets").arr()
	for _, name := range []string{"default", "ROOTCA"} {
		w.e().obj()
		w.kv("name", name)
		w.kvs("version_info", tsRFC(clockMs-int64(r.IntN(12*hourMs))))
		w.kv("last_updated", tsRFC(clockMs-int64(r.IntN(12*hourMs))))
		w.k("secret").obj()
		w.kv("@type", "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret")
		w.kv("name", name)
		w.k("tls_certificate").obj()
		w.k("certificate_chain").obj()
		der := make([]byte, between(r, 700, 900))
		fillRandom(der, r)
		w.kv("inline_bytes", base64.StdEncoding.EncodeToString(der))
		w.endObj()
		w.endObj()
		w.endObj()
		w.endObj()
	}
	w.endArr()
	w.endObj()

	w.endArr()
	w.endObj()
	w.b = append(w.b, '\n')
	return w.b
}

func writeNode(w *jsonw, r *rand.Rand, opt Options, p *proxyInfo) {
	w.k("node").obj()
	w.kvs("id", "sidecar~", p.ip, "~", p.pod, ".", p.ns, "~", p.ns, ".svc.cluster.local")
	w.kvs("cluster", p.app, ".", p.ns)
	w.k("metadata").obj()
	w.kv("ISTIO_VERSION", "1.24.2")
	w.kv("CLUSTER_ID", "Kubernetes")
	w.kvs("INSTANCE_IPS", p.ip)
	w.kv("INTERCEPTION_MODE", "REDIRECT")
	w.kvs("NAME", p.pod)
	w.kv("NAMESPACE", p.ns)
	w.kvs("WORKLOAD_NAME", p.app)
	w.kvs("OWNER", "kubernetes://apis/apps/v1/namespaces/", p.ns, "/deployments/", p.app)
	w.kvs("MESH_ID", "cluster.local")
	w.kvs("SERVICE_ACCOUNT", p.app)
	w.k("LABELS").obj()
	for i := 0; i < 4; i++ {
		w.kv(labelKeys[(p.idx+i)%len(labelKeys)], pick(r, labelVals))
	}
	w.kvs("pod-template-hash", p.pod[len(p.app)+1:len(p.app)+11])
	w.endObj()
	w.endObj()
	w.k("locality").obj()
	reg := regions[p.idx%len(regions)]
	w.kv("region", reg)
	w.kvs("zone", reg, zoneSuffixes[p.idx%3])
	w.endObj()
	w.kv("user_agent_name", "envoy")
	w.endObj()
}

func writeCluster(w *jsonw, r *rand.Rand, u upstream, trustedCA string, clockMs int64) {
	name := u.cluster()
	w.e().obj()
	w.kvs("version_info", tsRFC(clockMs-int64(r.IntN(6*hourMs))), "/", strconv.Itoa(between(r, 1, 999)))
	w.k("cluster").obj()
	w.kv("@type", "type.googleapis.com/envoy.config.cluster.v3.Cluster")
	w.kv("name", name)
	w.kv("type", "EDS")
	w.k("eds_cluster_config").obj()
	w.k("eds_config").obj()
	w.kraw("ads", "{}")
	w.kv("initial_fetch_timeout", "0s")
	w.kv("resource_api_version", "V3")
	w.endObj()
	w.kv("service_name", name)
	w.endObj()
	w.kvs("connect_timeout", strconv.Itoa(between(r, 1, 30)), "s")
	w.kv("lb_policy", pick(r, lbPolicies))
	w.k("circuit_breakers").obj()
	w.k("thresholds").arr()
	w.e().obj()
	w.kn("max_connections", 4294967295)
	w.kn("max_pending_requests", 4294967295)
	w.kn("max_requests", 4294967295)
	w.kn("max_retries", 4294967295)
	w.kb("track_remaining", true)
	w.endObj()
	w.endArr()
	w.endObj()
	w.k("metadata").obj()
	w.k("filter_metadata").obj()
	w.k("istio").obj()
	w.k("services").arr()
	w.e().obj()
	w.kv("host", u.host())
	w.kv("name", u.svc)
	w.kv("namespace", u.ns)
	w.endObj()
	w.endArr()
	w.kvs("config", "/apis/networking.istio.io/v1/namespaces/", u.ns, "/destination-rule/", u.svc)
	w.k("config_hash").strs("sha1:", string(appendHex(nil, r, 40)))
	w.endObj()
	w.endObj()
	w.endObj()
	w.k("transport_socket_matches").arr()
	w.e().obj()
	w.kv("name", "tlsMode-istio")
	w.k("match").obj()
	w.kv("tlsMode", "istio")
	w.endObj()
	w.k("transport_socket").obj()
	w.kv("name", "envoy.transport_sockets.tls")
	w.k("typed_config").obj()
	w.kv("@type", "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext")
	w.k("common_tls_context").obj()
	w.k("tls_params").obj()
	w.kv("tls_minimum_protocol_version", "TLSv1_2")
	w.kv("tls_maximum_protocol_version", "TLSv1_3")
	w.endObj()
	w.kraw("alpn_protocols", `["istio-peer-exchange", "istio"]`)
	w.k("tls_certificate_sds_secret_configs").arr()
	w.e().obj()
	w.kv("name", "default")
	w.k("sds_config").obj()
	w.k("api_config_source").obj()
	w.kv("api_type", "GRPC")
	w.kraw("grpc_services", `[{"envoy_grpc": {"cluster_name": "sds-grpc"}}]`)
	w.kb("set_node_on_first_message_only", true)
	w.kv("transport_api_version", "V3")
	w.endObj()
	w.kv("initial_fetch_timeout", "0s")
	w.kv("resource_api_version", "V3")
	w.endObj()
	w.endObj()
	w.endArr()
	w.k("combined_validation_context").obj()
	w.k("default_validation_context").obj()
	w.k("trusted_ca").obj()
	w.kv("inline_string", trustedCA)
	w.endObj()
	w.k("match_typed_subject_alt_names").arr()
	w.e().obj()
	w.kv("san_type", "URI")
	w.k("matcher").obj()
	w.kvs("exact", "spiffe://cluster.local/ns/", u.ns, "/sa/", u.svc)
	w.endObj()
	w.endObj()
	w.endArr()
	w.endObj()
	w.endObj()
	w.endObj()
	w.kvs("sni", "outbound_.", strconv.Itoa(u.port), "_._.", u.host())
	w.endObj()
	w.endObj()
	w.endObj()
	w.endArr()
	w.endObj()
	w.kv("last_updated", tsRFC(clockMs-int64(r.IntN(6*hourMs))))
	w.endObj()
}

var httpFilters = []string{"istio.metadata_exchange", "envoy.filters.http.grpc_stats", "istio.alpn",
	"envoy.filters.http.fault", "envoy.filters.http.cors", "istio.stats", "envoy.filters.http.router"}

const accessLogFormat = `[%START_TIME%] seq=%DYNAMIC_METADATA(seq)% \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n`

func writeListener(w *jsonw, r *rand.Rand, u upstream, clockMs int64) {
	addr := "0.0.0.0"
	if r.IntN(2) == 0 {
		addr = string(appendIP(nil, r, 10))
	}
	port := strconv.Itoa(u.port)
	name := addr + "_" + port
	w.e().obj()
	w.kv("name", name)
	w.k("active_state").obj()
	w.kvs("version_info", tsRFC(clockMs-int64(r.IntN(6*hourMs))), "/", strconv.Itoa(between(r, 1, 999)))
	w.k("listener").obj()
	w.kv("@type", "type.googleapis.com/envoy.config.listener.v3.Listener")
	w.kv("name", name)
	w.k("address").obj()
	w.k("socket_address").obj()
	w.kv("address", addr)
	w.kn("port_value", int64(u.port))
	w.endObj()
	w.endObj()
	w.k("filter_chains").arr()
	w.e().obj()
	w.k("filters").arr()
	w.e().obj()
	w.kv("name", "envoy.filters.network.http_connection_manager")
	w.k("typed_config").obj()
	w.kv("@type", "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")
	w.kvs("stat_prefix", "outbound_", name)
	w.k("rds").obj()
	w.k("config_source").obj()
	w.kraw("ads", "{}")
	w.kv("initial_fetch_timeout", "0s")
	w.kv("resource_api_version", "V3")
	w.endObj()
	w.kv("route_config_name", port)
	w.endObj()
	w.k("http_filters").arr()
	for _, f := range httpFilters {
		w.e().obj()
		w.kv("name", f)
		w.k("typed_config").obj()
		w.kvs("@type", "type.googleapis.com/", f, ".v3.Config")
		w.endObj()
		w.endObj()
	}
	w.endArr()
	w.k("tracing").obj()
	w.k("client_sampling").obj()
	w.kn("value", 100)
	w.endObj()
	w.k("random_sampling").obj()
	w.kraw("value", strconv.Itoa(r.IntN(100))+"."+strconv.Itoa(r.IntN(10)))
	w.endObj()
	w.endObj()
	w.k("access_log").arr()
	w.e().obj()
	w.kv("name", "envoy.access_loggers.file")
	w.k("typed_config").obj()
	w.kv("@type", "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog")
	w.kv("path", "/etc/istio/proxy/access.log")
	w.k("log_format").obj()
	w.k("text_format_source").obj()
	w.kv("inline_string", accessLogFormat)
	w.endObj()
	w.endObj()
	w.endObj()
	w.endObj()
	w.endArr()
	w.kb("use_remote_address", false)
	w.kv("stream_idle_timeout", "0s")
	w.k("request_id_extension").obj()
	w.k("typed_config").obj()
	w.kv("@type", "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig")
	w.kb("use_request_id_for_trace_sampling", true)
	w.endObj()
	w.endObj()
	w.endObj()
	w.endObj()
	w.endArr()
	w.endObj()
	w.endArr()
	w.k("traffic_direction").str("OUTBOUND")
	w.endObj()
	w.kv("last_updated", tsRFC(clockMs-int64(r.IntN(6*hourMs))))
	w.endObj()
	w.endObj()
}

func writeRouteConfig(w *jsonw, r *rand.Rand, opt Options, p *proxyInfo, i int, clockMs int64) {
	w.e().obj()
	w.kvs("version_info", tsRFC(clockMs-int64(r.IntN(6*hourMs))), "/", strconv.Itoa(between(r, 1, 999)))
	w.k("route_config").obj()
	w.kv("@type", "type.googleapis.com/envoy.config.route.v3.RouteConfiguration")
	port := ports[i%len(ports)]
	w.kvs("name", strconv.Itoa(port), "-", strconv.Itoa(i))
	w.k("virtual_hosts").arr()
	nvh := between(r, 2, 6)
	for v := 0; v < nvh; v++ {
		u := upstreamFor(opt.Seed, p.idx, r.IntN(24))
		hp := u.host() + ":" + strconv.Itoa(u.port)
		w.e().obj()
		w.kv("name", hp)
		w.k("domains").arr()
		for _, d := range []string{u.host(), u.svc, u.svc + "." + u.ns, u.svc + "." + u.ns + ".svc", string(appendIP(nil, r, 10))} {
			w.e().str(d)
		}
		w.endArr()
		w.k("routes").arr()
		w.e().obj()
		w.k("match").obj()
		w.kv("prefix", "/")
		w.endObj()
		w.k("route").obj()
		w.kv("cluster", u.cluster())
		w.kvs("timeout", strconv.Itoa(r.IntN(60)), "s")
		w.k("retry_policy").obj()
		w.kv("retry_on", "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes")
		w.kn("num_retries", int64(between(r, 1, 5)))
		w.kraw("retry_host_predicate", `[{"name": "envoy.retry_host_predicates.previous_hosts"}]`)
		w.kn("host_selection_retry_max_attempts", 5)
		w.kraw("retriable_status_codes", "[503]")
		w.endObj()
		w.kn("max_grpc_timeout", 0)
		w.endObj()
		w.k("metadata").obj()
		w.k("filter_metadata").obj()
		w.k("istio").obj()
		w.kvs("config", "/apis/networking.istio.io/v1/namespaces/", u.ns, "/virtual-service/", u.svc)
		w.endObj()
		w.endObj()
		w.endObj()
		w.kv("decorator", u.host()+":"+strconv.Itoa(u.port)+"/*")
		w.kvs("name", "default-", string(appendHex(nil, r, 8)))
		w.endObj()
		w.endArr()
		w.kb("include_request_attempt_count", true)
		w.endObj()
	}
	w.endArr()
	w.kb("validate_clusters", false)
	w.endObj()
	w.kv("last_updated", tsRFC(clockMs-int64(r.IntN(6*hourMs))))
	w.endObj()
}

// mutateConfigDump returns a copy of data with 1-5% of its bytes changed in
// a few clustered regions (resources that got a new version). Only digits,
// characters of hex strings (hashes) and of base64 strings (inline
// certificates) are replaced, by characters of the same class, so valid JSON
// stays valid and the length is preserved.
func mutateConfigDump(data []byte, r *rand.Rand) []byte {
	out := append([]byte(nil), data...)
	n := len(out)
	if n == 0 {
		return out
	}
	want := int(float64(n) * betweenF(r, 0.012, 0.048))
	regionLen := min(max(n/64, 1024), 16<<10)
	changed := 0
	for attempts := 0; changed < want && attempts < 4000; attempts++ {
		i := r.IntN(n)
		end := min(i+int(float64(regionLen)*betweenF(r, 0.5, 2)), n)
		for i > 0 && isTokenChar(out[i-1]) {
			i--
		}
		for i < end && changed < want {
			if !isTokenChar(out[i]) {
				i++
				continue
			}
			j := i
			for j < n && isTokenChar(out[j]) {
				j++
			}
			kind := classifyToken(out[i:j])
			for k := i; k < j && changed < want; k++ {
				c := out[k]
				if k > 0 && out[k-1] == '\\' {
					continue // part of an escape sequence such as \n
				}
				var nc byte
				switch {
				case kind == tokHex:
					nc = hexDigits[r.IntN(16)]
				case kind == tokBase64:
					nc = base64Chars[r.IntN(64)]
				case c >= '0' && c <= '9':
					if k > 0 && out[k-1] >= '0' && out[k-1] <= '9' {
						nc = byte('0' + r.IntN(10))
					} else {
						nc = byte('1' + r.IntN(9)) // never a leading zero
					}
				default:
					continue
				}
				if nc == c {
					continue
				}
				if c == data[k] {
					changed++
				} else if nc == data[k] {
					changed--
				}
				out[k] = nc
			}
			i = j
		}
	}
	return out
}

const base64Chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

const (
	tokOther = iota
	tokHex
	tokBase64
)

func isTokenChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '+' || c == '/'
}

// classifyToken tells hashes (>= 8 lower-case hex characters with a letter
// and a digit) and base64 data (>= 16 characters with upper, lower and
// digits) from other tokens. Both only occur inside JSON strings.
func classifyToken(t []byte) int {
	var digit, hexLetter, lower, upper, other bool
	for _, c := range t {
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'f':
			hexLetter = true
		case c >= 'g' && c <= 'z':
			lower = true
		case c >= 'A' && c <= 'Z':
			upper = true
		default:
			other = true
		}
	}
	switch {
	case len(t) >= 8 && digit && hexLetter && !lower && !upper && !other:
		return tokHex
	case len(t) >= 16 && digit && upper && (lower || hexLetter):
		return tokBase64
	}
	return tokOther
}

// ---------------------------------------------------------------- stats

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

// ---------------------------------------------------------------- bootstrap

var statsTagRegexes = []string{
	`^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)`,
	`^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)`,
	`^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)`,
	`(response_code=\.=(.+?);\.;)|_rq(_(\.d{3}))$`,
	`_rq(_(\dxx))$`,
	`^vhost\.((.*?)\.)`,
	`^(?:tcp|udp|http)\.((.*?)\.)`,
	`(source_workload_namespace=\.=(.+?);\.;)`,
	`(destination_service=\.=(.+?);\.;)`,
	`^cluster(?=\.).*?\.circuit_breakers(\.(.+?)\.)`,
}

func genBootstrap(opt Options, p *proxyInfo, gen int, clockMs int64) []byte {
	r := newRand(opt.Seed, tagBoot, uint64(p.idx), uint64(gen))
	target := between(r, 10<<10, 30<<10) - 512
	w := &jsonw{b: make([]byte, 0, target+8<<10)}
	w.obj()
	writeNode(w, r, opt, p)
	w.k("layered_runtime").obj()
	w.k("layers").arr()
	w.e().obj()
	w.kv("name", "global config")
	w.k("static_layer").obj()
	w.kn("envoy.deprecated_features:envoy.config.listener.v3.Listener.hidden_envoy_deprecated_use_original_dst", 1)
	w.kn("re2.max_program_size.error_level", 32768)
	w.kb("envoy.reloadable_features.http_reject_path_with_fragment", false)
	w.endObj()
	w.endObj()
	w.endArr()
	w.endObj()
	w.k("stats_config").obj()
	w.kb("use_all_default_tags", false)
	w.k("stats_tags").arr()
	for i := 0; w.size() < target/2; i++ {
		w.e().obj()
		w.kvs("tag_name", "istio_tag_", strconv.Itoa(i))
		w.kv("regex", strings.ReplaceAll(statsTagRegexes[i%len(statsTagRegexes)], `\`, `\\`))
		w.endObj()
	}
	w.endArr()
	w.endObj()
	w.k("admin").obj()
	w.k("address").obj()
	w.k("pipe").obj()
	w.kv("path", "/etc/istio/proxy/admin.sock")
	w.kn("mode", 0o600)
	w.endObj()
	w.endObj()
	w.kv("profile_path", "/var/lib/istio/data/envoy.prof")
	w.endObj()
	w.k("dynamic_resources").obj()
	w.k("ads_config").obj()
	w.kv("api_type", "GRPC")
	w.kraw("grpc_services", `[{"envoy_grpc": {"cluster_name": "xds-grpc"}}]`)
	w.endObj()
	w.k("cds_config").obj()
	w.kraw("ads", "{}")
	w.endObj()
	w.k("lds_config").obj()
	w.kraw("ads", "{}")
	w.endObj()
	w.endObj()
	w.k("static_resources").obj()
	w.k("clusters").arr()
	for i := 0; w.size() < target; i++ {
		names := []string{"prometheus_stats", "agent", "sds-grpc", "xds-grpc", "zipkin"}
		name := names[i%len(names)]
		if i >= len(names) {
			name += "-" + strconv.Itoa(i/len(names))
		}
		w.e().obj()
		w.kv("name", name)
		w.kv("type", "STATIC")
		w.kvs("connect_timeout", strconv.Itoa(between(r, 1, 10)), "s")
		w.k("load_assignment").obj()
		w.kv("cluster_name", name)
		w.k("endpoints").arr()
		w.e().obj()
		w.k("lb_endpoints").arr()
		w.e().obj()
		w.k("endpoint").obj()
		w.k("address").obj()
		w.k("socket_address").obj()
		w.kv("address", "127.0.0.1")
		w.kn("port_value", int64(15000+r.IntN(100)))
		w.endObj()
		w.endObj()
		w.endObj()
		w.endObj()
		w.endArr()
		w.endObj()
		w.endArr()
		w.endObj()
		w.endObj()
	}
	w.endArr()
	w.endObj()
	w.kvs("generated_at", tsRFC(clockMs))
	w.kn("restart_epoch", int64(gen))
	w.endObj()
	w.b = append(w.b, '\n')
	return w.b
}

// ---------------------------------------------------------------- xDS / tap

func genEDS(r *rand.Rand, u upstream, clockMs int64) []byte {
	w := &jsonw{b: make([]byte, 0, 4096)}
	w.obj()
	w.kv("@type", "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment")
	w.kv("cluster_name", u.cluster())
	w.k("endpoints").arr()
	nloc := between(r, 1, 3)
	for l := 0; l < nloc; l++ {
		reg := pick(r, regions)
		w.e().obj()
		w.k("locality").obj()
		w.kv("region", reg)
		w.kvs("zone", reg, pick(r, zoneSuffixes))
		w.endObj()
		w.k("lb_endpoints").arr()
		n := between(r, 1, 6)
		for i := 0; i < n; i++ {
			w.e().obj()
			w.k("endpoint").obj()
			w.k("address").obj()
			w.k("socket_address").obj()
			w.kv("address", string(appendIP(nil, r, 10)))
			w.kn("port_value", int64(u.port))
			w.endObj()
			w.endObj()
			w.endObj()
			w.kv("health_status", pick(r, healthStates))
			w.k("metadata").obj()
			w.k("filter_metadata").obj()
			w.k("istio").obj()
			w.kvs("workload", u.svc, ";", u.ns, ";", u.svc, ";v", strconv.Itoa(between(r, 1, 3)), ";Kubernetes")
			w.endObj()
			w.endObj()
			w.endObj()
			w.kn("load_balancing_weight", int64(between(r, 1, 128)))
			w.endObj()
		}
		w.endArr()
		w.endObj()
	}
	w.endArr()
	w.kv("last_updated", tsRFC(clockMs))
	w.endObj()
	w.b = append(w.b, '\n')
	return w.b
}

func genTap(r *rand.Rand, seed uint64, p *proxyInfo, clockMs int64) []byte {
	w := &jsonw{b: make([]byte, 0, 32<<10)}
	u := upstreamFor(seed, p.idx, r.IntN(24))
	w.obj()
	w.k("http_buffered_trace").obj()
	for _, part := range []string{"request", "response"} {
		w.k(part).obj()
		w.k("headers").arr()
		hdrs := [][2]string{{":authority", u.host()}, {":path", pick(r, pathRoots) + pick(r, pathWords)},
			{":method", pick(r, methods)}, {"user-agent", pick(r, userAgents)},
			{"x-request-id", uuidString(r)}, {"content-type", "application/json"},
			{"x-b3-traceid", string(appendHex(nil, r, 32))}, {"date", tsRFC(clockMs)}}
		if part == "response" {
			hdrs = [][2]string{{":status", strconv.Itoa(statusCodes[r.IntN(len(statusCodes))])},
				{"content-type", "application/json"}, {"date", tsRFC(clockMs)},
				{"x-envoy-upstream-service-time", strconv.Itoa(r.IntN(500))}, {"server", "istio-envoy"}}
		}
		for _, h := range hdrs {
			w.e().obj()
			w.kv("key", h[0])
			w.kv("value", h[1])
			w.endObj()
		}
		w.endArr()
		body := make([]byte, between(r, 1<<10, 15<<10))
		if r.IntN(2) == 0 {
			fillRandom(body, r)
		} else {
			jb := &jsonw{b: body[:0]}
			jb.obj()
			for jb.size() < len(body)-64 {
				jb.kn(pick(r, pathWords)+"_"+strconv.Itoa(r.IntN(1000)), int64(r.IntN(1_000_000)))
			}
			jb.endObj()
			body = jb.b
		}
		w.k("body").obj()
		w.kv("as_bytes", base64.StdEncoding.EncodeToString(body))
		w.kb("truncated", r.IntN(4) == 0)
		w.endObj()
		w.endObj()
	}
	w.endObj()
	w.endObj()
	w.b = append(w.b, '\n')
	return w.b
}
