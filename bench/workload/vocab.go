package workload

var (
	namespaces = []string{"payments", "checkout", "catalog", "identity", "search", "inventory",
		"shipping", "billing", "analytics", "notifications", "default", "platform", "media", "fraud"}
	serviceNames = []string{"api", "frontend", "worker", "ledger", "orders", "cart", "auth", "profile",
		"indexer", "recommender", "scheduler", "pricing", "reviews", "mailer", "sessions", "quotes",
		"tax", "refunds", "images", "thumbnails", "audit", "events", "geo", "rates"}
	gatewayNames = []string{"ingressgateway", "egressgateway", "edge-gateway", "partner-gateway"}
	ports        = []int{8080, 8080, 8080, 9090, 8443, 5432, 6379, 443, 80, 50051, 3000, 8000}
	methods      = []string{"GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}
	pathRoots    = []string{"/api/v1/", "/api/v2/", "/v1/", "/internal/", "/graphql", "/healthz", "/metrics", "/rpc/"}
	pathWords    = []string{"orders", "items", "users", "accounts", "carts", "sessions", "products", "prices",
		"invoices", "payments", "refunds", "search", "reviews", "images", "tokens", "events", "quotes", "shipments"}
	queryWords = []string{"page", "limit", "sort", "filter", "cursor", "lang", "currency", "fields", "expand"}
	protocols  = []string{"HTTP/1.1", "HTTP/1.1", "HTTP/2", "HTTP/2", "HTTP/2"}
	userAgents = []string{"curl/8.5.0", "Go-http-client/2.0", "grpc-go/1.62.1", "okhttp/4.12.0",
		"python-requests/2.31.0", "Envoy/HC", "kube-probe/1.31",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Mobile/15E148",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Firefox/132.0",
		"axios/1.7.7", "Java/21.0.5", "node-fetch/1.0", "Prometheus/2.55.1"}
	respFlags   = []string{"-", "-", "-", "-", "-", "-", "-", "-", "UF", "UH", "URX", "NR", "DC", "UT", "RL"}
	codeDetails = []string{"via_upstream", "via_upstream", "via_upstream", "route_not_found",
		"upstream_reset_before_response_started{connection_termination}", "rate_limited", "downstream_remote_disconnect"}
	statusCodes  = []int{200, 200, 200, 200, 200, 200, 200, 201, 204, 301, 304, 400, 401, 403, 404, 404, 409, 429, 500, 502, 503, 504}
	regions      = []string{"us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1"}
	zoneSuffixes = []string{"a", "b", "c"}
	baggageKeys  = []string{"tenant", "region", "plan", "experiment", "client", "feature", "cohort", "build"}
	baggageVals  = []string{"alpha", "beta", "gold", "silver", "control", "treatment", "mobile", "web", "batch", "eu", "us", "canary"}
	lbPolicies   = []string{"ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV"}
	healthStates = []string{"HEALTHY", "HEALTHY", "HEALTHY", "HEALTHY", "UNHEALTHY", "DRAINING", "UNKNOWN"}
	labelKeys    = []string{"app", "version", "team", "tier", "track", "release", "component", "owner", "cost-center", "security.istio.io/tlsMode"}
	labelVals    = []string{"stable", "canary", "v1", "v2", "v3", "backend", "frontend", "platform", "payments-team", "istio", "sre", "core"}
	consulKeys   = []string{"config/", "locks/", "service/", "feature-flags/", "vault/", "leader/", "rate-limits/"}
)
