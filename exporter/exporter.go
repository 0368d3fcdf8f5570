// Package exporter serves the daemon over HTTP: /metrics (promhttp,
// OpenMetrics with exemplars), a landing page with a per-policy status table,
// /healthz, /readyz and /api/v1/status. TLS and basic auth come from an
// exporter-toolkit web config file, as in node_exporter; they cover every
// path of the main address, the probes too. A probe address, if set, serves
// /healthz and /readyz alone, in plain HTTP without authentication, for a
// kubelet's probes: they reveal nothing. The exporter only serves what the
// collectors and the daemon's status already hold.
//
// Imports: the Prometheus client, promhttp and exporter-toolkit, and of the
// engine only backupd/daemon and backupd/results (for the status types). It
// must not import collectors/ (main hands it the registry) or any other
// engine package; only main imports it (docs/DESIGN.md §2.3).
package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/backupd/results"
)

// Source is what the exporter reads from the daemon.
type Source interface {
	Ready() bool
	Status() []daemon.Status
}

// Options configure the server.
type Options struct {
	ListenAddress string // default 127.0.0.1:9847
	WebConfigFile string // exporter-toolkit web config (TLS, basic auth)
	Version       string
	Logger        *slog.Logger
	// MaxRequestsInFlight bounds concurrent scrapes: 10.
	MaxRequestsInFlight int
	// ProbeAddress, if set, serves /healthz and /readyz there without TLS
	// or authentication.
	ProbeAddress string
}

// Server is the HTTP server.
type Server struct {
	opt     Options
	handler http.Handler
	probes  http.Handler // /healthz and /readyz alone
	src     Source
}

// Registry is what the exporter serves metrics from: a prometheus.Registry,
// or collectors.Registry, whose Gather adds the cached run metrics. The
// handler's own metrics (promhttp_metric_handler_*) are registered with it.
type Registry interface {
	prometheus.Gatherer
	prometheus.Registerer
}

// New builds the handlers; reg holds every metric to serve.
func New(reg Registry, src Source, opt Options) *Server {
	if opt.ListenAddress == "" {
		opt.ListenAddress = "127.0.0.1:9847"
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.MaxRequestsInFlight == 0 {
		opt.MaxRequestsInFlight = 10
	}
	s := &Server{opt: opt, src: src}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics:   true,
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: opt.MaxRequestsInFlight,
		ErrorLog:            slog.NewLogLogger(opt.Logger.Handler(), slog.LevelError),
	})))
	probes := http.NewServeMux()
	for _, m := range []*http.ServeMux{mux, probes} {
		m.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
		m.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
			if !src.Ready() {
				http.Error(w, "not ready: repositories are being opened", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ready")
		})
	}
	s.probes = probes
	mux.HandleFunc("/api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"ready": src.Ready(), "policies": src.Status()})
	})
	mux.HandleFunc("/", s.landing)
	s.handler = mux
	return s
}

// Handler returns the server's handler (for tests).
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) landing(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	page, err := web.NewLandingPage(web.LandingConfig{
		Name:        "backupd",
		Description: "Backups of service-mesh volumes, proved restorable by drills",
		Version:     s.opt.Version,
		Links: []web.LandingLinks{
			{Address: "/metrics", Text: "Metrics"},
			{Address: "/api/v1/status", Text: "Status (JSON)"},
			{Address: "/healthz", Text: "Health"},
			{Address: "/readyz", Text: "Readiness"},
		},
		ExtraHTML: statusTable(s.src.Status(), time.Now()),
		ExtraCSS:  "table.status{border-collapse:collapse;margin:1em 0}table.status td,table.status th{border:1px solid #ccc;padding:4px 8px;text-align:left}.failure{color:#b00}.success{color:#070}",
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	page.ServeHTTP(w, r)
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		return "in " + (-d).String()
	}
	return d.String() + " ago"
}

// statusTable renders one row per policy. Every value is escaped.
func statusTable(st []daemon.Status, now time.Time) string {
	var b strings.Builder
	b.WriteString(`<h2>Policies</h2><table class="status"><tr><th>policy</th><th>repository</th><th>last good snapshot</th><th>RPO</th><th>last backup</th><th>last drill</th><th>last verify</th><th>next backup</th></tr>`)
	cell := func(recs []results.Record) string {
		if len(recs) == 0 {
			return "<td>never</td>"
		}
		r := recs[0]
		txt := fmt.Sprintf("%s, %s", r.Outcome, ago(r.End, now))
		if r.Reason != "" {
			txt += " (" + r.Reason + ")"
		}
		return fmt.Sprintf(`<td class="%s">%s</td>`, html.EscapeString(string(r.Outcome)), html.EscapeString(txt))
	}
	for _, p := range st {
		backup := cell(p.LastBackups)
		if r := p.Running; r != nil && r.Kind == results.Backup {
			backup = fmt.Sprintf(`<td class="running">%s</td>`, html.EscapeString(fmt.Sprintf("running, started %s: %d files, %.1f MiB read, %.1f MiB stored so far",
				ago(r.Start, now), r.Files, float64(r.BytesRead)/(1<<20), float64(r.BytesWritten)/(1<<20))))
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td>%s%s%s<td>%s</td></tr>",
			html.EscapeString(p.Policy), html.EscapeString(p.Repository), html.EscapeString(ago(p.LastSnapshot, now)),
			html.EscapeString((time.Duration(p.RPOSeconds) * time.Second).String()),
			backup, cell(p.LastDrills), cell(p.LastVerifies), html.EscapeString(ago(p.NextBackup, now)))
	}
	b.WriteString("</table>")
	return b.String()
}

// Serve listens until ctx ends, then shuts down gracefully; with a probe
// address it serves the probes there too.
func (s *Server) Serve(ctx context.Context) error {
	if s.opt.ProbeAddress == "" {
		return s.serveMain(ctx)
	}
	l, err := net.Listen("tcp", s.opt.ProbeAddress)
	if err != nil {
		return fmt.Errorf("probe address %s: %w", s.opt.ProbeAddress, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	probeErr := make(chan error, 1)
	go func() { probeErr <- s.ServeProbes(ctx, l) }()
	err = s.serveMain(ctx)
	cancel()
	if perr := <-probeErr; err == nil && perr != nil {
		err = fmt.Errorf("probe address %s: %w", s.opt.ProbeAddress, perr)
	}
	return err
}

// ServeProbes serves /healthz and /readyz on l, plain HTTP without
// authentication, until ctx ends.
func (s *Server) ServeProbes(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: s.probes, ReadHeaderTimeout: 10 * time.Second}
	return serveUntil(ctx, srv, func() error { return srv.Serve(l) })
}

func (s *Server) serveMain(ctx context.Context) error {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	addrs := []string{s.opt.ListenAddress}
	systemd := false
	flags := &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &systemd, WebConfigFile: &s.opt.WebConfigFile}
	if err := serveUntil(ctx, srv, func() error { return web.ListenAndServe(srv, flags, s.opt.Logger) }); err != nil {
		return fmt.Errorf("web server on %s: %w", s.opt.ListenAddress, err)
	}
	return nil
}

// ServeListener serves on an existing listener (tests: 127.0.0.1:0).
func (s *Server) ServeListener(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	flags := &web.FlagConfig{WebConfigFile: &s.opt.WebConfigFile}
	return serveUntil(ctx, srv, func() error { return web.Serve(l, srv, flags, s.opt.Logger) })
}

// serveUntil runs serve (which serves srv) until it fails or ctx ends, then
// shuts srv down within 5 seconds and waits for serve to return.
func serveUntil(ctx context.Context, srv *http.Server, serve func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			return err
		}
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
