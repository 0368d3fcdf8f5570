package workload

import (
	"encoding/base64"
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
