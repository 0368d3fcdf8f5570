package workload

import (
	"encoding/base64"
	"math/rand/v2"
	"strconv"
	"strings"
)

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
