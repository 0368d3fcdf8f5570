// Command bench measures whole backup processes — backupd against restic and
// borg (and kopia when installed) — on the same generated service-mesh volume
// set, in the same run:
//
//  1. first backup of the generated set;
//  2. a backup with nothing changed, -repeat times (the median counts);
//  3. a backup after a small change, about 1% of the bytes: simulated
//     minutes in which a few proxies at a time are active and Consul is
//     idle (workload.MutateSome); -repeat-change times from the same state
//     (the median counts);
//  4. a backup after one simulated minute of the whole mesh (workload.Mutate,
//     several percent of the bytes);
//  5. a full restore of the latest snapshot into an empty directory, verified
//     against workload.Manifest of the source;
//  6. the repository size on disk.
//
// Each run is one child process; wall time, CPU time (user+sys) and peak RSS
// come from its rusage. The results are written as JSON (-out) and, with
// -markdown, printed as a markdown table followed by backupd's ratio to the
// fastest peer for each measure, against the project's targets. Progress
// goes to stderr.
//
//	go run ./bench/cmd/bench [-work DIR] [-proxies N] [-consul N] [-scale F]
//	    [-seed S] [-tools backupd,restic,borg,kopia] [-out FILE] [-markdown] [-s3]
//
// With -s3 every repository is a bucket of a MinIO server the bench starts
// (borg, which has no S3 backend, is skipped), and every request goes
// through a counting reverse proxy in the bench, so the results also hold
// each run's requests by method and bytes sent and received.
//
// It is run by `make bench` from the module root; see bench/README.md.
//
// Imports: bench/workload; it runs backupd as a separate process and imports
// no engine, collector or exporter code (docs/DESIGN.md §2.3).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// config holds the parsed command line.
type config struct {
	work      string
	out       string
	backupd   string
	tools     []string // nil: every tool found
	proxies   int
	consul    int
	scale     float64
	seed      uint64
	changePct float64
	maxSteps  int
	repeat    int
	// repeatChange is how many times the small-change backup runs.
	repeatChange int
	markdown     bool
	keep         bool
	// s3 runs every tool against an S3 repository in a MinIO the bench
	// starts, through its counting proxy.
	s3 bool
	// faults runs the fault benchmark instead (-faults); out is then a
	// directory.
	isFaults bool
	faults   faultsConfig
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		if ctx.Err() != nil {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.isFaults {
		prog := newProgress(stderr)
		res, err := runFaults(ctx, cfg, prog)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: %d cells in %s, results written to %s\n", len(res.Cells),
			res.Finished.Sub(res.Started).Round(time.Second), filepath.Join(cfg.out, "faults.json"))
		return nil
	}
	log := newLogger(stderr)
	res, err := runBench(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := writeJSON(cfg.out, res); err != nil {
		return err
	}
	log.printf("results written to %s", cfg.out)
	if cfg.markdown {
		if _, err := io.WriteString(stdout, renderMarkdown(res)); err != nil {
			return fmt.Errorf("print markdown: %w", err)
		}
	}
	return nil
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	root := moduleRoot()
	cfg := &config{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var tools, scenarios, workloads string
	fs.StringVar(&cfg.work, "work", "", "work directory: cached source set, repositories, restores (default var/bench, with -faults var/bench-faults)")
	fs.StringVar(&cfg.out, "out", "", "results JSON file (default bench/results/latest.json, with -s3 bench/results/s3.json); with -faults the directory of faults.json (default bench/results)")
	fs.StringVar(&cfg.backupd, "backupd", filepath.Join(root, "bin", "backupd"), "backupd binary")
	fs.StringVar(&tools, "tools", "", "comma-separated tools to run: backupd,restic,borg,kopia (default: those found)")
	fs.IntVar(&cfg.proxies, "proxies", 200, "proxies in the generated volume set")
	fs.IntVar(&cfg.consul, "consul", 3, "Consul servers in the generated volume set")
	fs.Float64Var(&cfg.scale, "scale", 1, "size multiplier of the big files in the generated set")
	fs.Uint64Var(&cfg.seed, "seed", 1, "content seed of the generated set")
	fs.Float64Var(&cfg.changePct, "change", 1, "percentage of bytes to change before the small-change backup")
	fs.IntVar(&cfg.maxSteps, "max-steps", 500, "most MutateSome steps applied to reach -change")
	fs.IntVar(&cfg.repeat, "repeat", 5, "runs of the no-change backup per tool (the median counts)")
	fs.IntVar(&cfg.repeatChange, "repeat-change", 3, "runs of the small-change backup per tool, each from the same state (the median counts)")
	fs.BoolVar(&cfg.markdown, "markdown", false, "print the markdown table and ratios on stdout")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the restored trees after verification")
	fs.BoolVar(&cfg.s3, "s3", false, "S3 mode: repositories in buckets of a MinIO started by the bench, requests counted by a proxy (borg skipped)")
	fs.BoolVar(&cfg.isFaults, "faults", false, "run the fault-tolerance benchmark (scenarios × tools × workloads, bench/README.md) instead")
	fs.StringVar(&cfg.faults.profile, "profile", "quick", "with -faults: quick or full (workload sizes and trials per scenario)")
	fs.StringVar(&scenarios, "scenarios", "", "with -faults: comma-separated scenarios to run (default all: "+strings.Join(scenarioIDs(), ",")+")")
	fs.StringVar(&workloads, "workloads", "", "with -faults: comma-separated workloads (default all: "+strings.Join(workloadNames(), ",")+")")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: bench [flags]\n\nWhole-process benchmark of backupd against restic, borg and kopia.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case cfg.proxies < 1:
		return nil, fmt.Errorf("-proxies %d: want at least 1", cfg.proxies)
	case cfg.consul < 1:
		return nil, fmt.Errorf("-consul %d: want at least 1", cfg.consul)
	case cfg.scale <= 0:
		return nil, fmt.Errorf("-scale %v: want a positive number", cfg.scale)
	case cfg.changePct <= 0 || cfg.changePct >= 100:
		return nil, fmt.Errorf("-change %v: want a percentage in (0, 100)", cfg.changePct)
	case cfg.repeatChange < 1:
		return nil, fmt.Errorf("-repeat-change %d: want at least 1", cfg.repeatChange)
	case cfg.repeat < 1:
		return nil, fmt.Errorf("-repeat %d: want at least 1", cfg.repeat)
	case cfg.maxSteps < 1:
		return nil, fmt.Errorf("-max-steps %d: want at least 1", cfg.maxSteps)
	}
	cfg.tools = splitList(tools)
	cfg.faults.scenarios, cfg.faults.workloads = splitList(scenarios), splitList(workloads)
	if cfg.isFaults {
		switch {
		case cfg.s3:
			return nil, errors.New("-faults and -s3: the fault benchmark uses local repositories")
		case cfg.faults.profile != "quick" && cfg.faults.profile != "full":
			return nil, fmt.Errorf("-profile %q: want quick or full", cfg.faults.profile)
		}
		if _, err := selectScenarios(cfg.faults.scenarios); err != nil {
			return nil, err
		}
		if _, err := selectWorkloads(cfg.faults.workloads, profiles()[cfg.faults.profile]); err != nil {
			return nil, err
		}
		if cfg.out == "" {
			cfg.out = filepath.Join(root, "bench", "results")
		}
		if cfg.work == "" {
			cfg.work = filepath.Join(root, "var", "bench-faults")
		}
	} else if scenarios != "" || workloads != "" {
		return nil, errors.New("-scenarios and -workloads need -faults")
	}
	if cfg.work == "" {
		cfg.work = filepath.Join(root, "var", "bench")
	}
	if cfg.out == "" {
		cfg.out = filepath.Join(root, "bench", "results", "latest.json")
		if cfg.s3 {
			cfg.out = filepath.Join(root, "bench", "results", "s3.json")
		}
	}
	var err error
	for _, p := range []*string{&cfg.work, &cfg.out, &cfg.backupd} {
		if *p, err = filepath.Abs(*p); err != nil {
			return nil, fmt.Errorf("resolve %s: %w", *p, err)
		}
	}
	return cfg, nil
}

// splitList splits a comma-separated flag value; nil when it is empty.
func splitList(v string) []string {
	var out []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// scenarioIDs lists the registered scenarios.
func scenarioIDs() []string {
	var ids []string
	for _, s := range scenarioRegistry() {
		ids = append(ids, s.id())
	}
	return ids
}

// moduleRoot returns the nearest directory at or above the working directory
// that holds a go.mod, or the working directory if there is none.
func moduleRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return wd
		}
		dir = parent
	}
}

// logger prints progress lines to stderr, prefixed with the elapsed time.
type logger struct {
	w     io.Writer
	start time.Time
}

func newLogger(w io.Writer) *logger { return &logger{w: w, start: time.Now()} }

func (l *logger) printf(format string, args ...any) {
	el := time.Since(l.start).Round(time.Second)
	fmt.Fprintf(l.w, "bench %8s  %s\n", el, fmt.Sprintf(format, args...))
}
