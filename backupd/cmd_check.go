package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshbackup/backupd/backupd/checker"
)

// checkOptions are check's flags.
type checkOptions struct {
	ReadData       bool
	ReadDataSubset string // N/T
}

func newCheckCommand(g *globalOptions) *cobra.Command {
	var opts checkOptions
	c := &cobra.Command{
		Use:   "check --repo DIR [--read-data | --read-data-subset N/T]",
		Short: "Verify the repository's structure and, optionally, read back its data",
		Long: `Check that every blob a snapshot needs is indexed, every indexed pack
exists, and every index entry agrees with its pack's trailer. --read-data
also reads every pack back, decrypts and re-hashes every blob;
--read-data-subset N/T reads the packs of part N of T (run 1/T .. T/T in
turn to cover everything). Exits 3 when anything is damaged, naming the
packs, blobs, snapshots and files affected: the first 10 per pack and per
snapshot, with counts of the rest (--json lists all), and a last
"damaged:" line with every damaged repository file.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), opts, g, args)
		},
	}
	c.Flags().BoolVar(&opts.ReadData, "read-data", false, "read back and verify every blob")
	c.Flags().StringVar(&opts.ReadDataSubset, "read-data-subset", "", "read back part N of T of the packs, e.g. 1/7")
	return c
}

func parseSubset(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "/")
	n, err1 := strconv.Atoi(a)
	t, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || t < 1 || n < 1 || n > t {
		return 0, 0, usageErr("--read-data-subset %q: want N/T with 1 <= N <= T, e.g. 2/7", s)
	}
	return n, t, nil
}

// runCheck checks the repository and prints a report; damage is exit 3.
func runCheck(ctx context.Context, opts checkOptions, g *globalOptions, _ []string) error {
	opt := checker.Options{ReadData: opts.ReadData}
	if opts.ReadDataSubset != "" {
		if opts.ReadData {
			return usageErr("--read-data and --read-data-subset exclude each other")
		}
		n, t, err := parseSubset(opts.ReadDataSubset)
		if err != nil {
			return err
		}
		opt.SubsetN, opt.SubsetT = n, t
	}
	// Check judges the store's copies: an intact copy in the local cache
	// would hide a damaged one there.
	g.noCache = true
	r, log, err := g.open(ctx)
	if err != nil {
		return err
	}
	opt.Logger = log
	var clearLine func()
	opt.Progress, clearLine = g.countProgress("read %d of %d packs")
	rep, err := checker.Check(ctx, r, opt)
	clearLine()
	if err != nil {
		return err
	}
	if g.json {
		rep.Problems, rep.Affected, rep.Warnings, rep.Suggestions = nonNil(rep.Problems), nonNil(rep.Affected), nonNil(rep.Warnings), nonNil(rep.Suggestions)
		// damaged comes last: a reader of the tail of a long report
		// (thousands of affected files) still finds what is damaged.
		out := struct {
			*checker.Report
			Damaged []string `json:"damaged"`
		}{rep, nonNil(damagedObjects(rep))}
		if err := g.printJSON(out); err != nil {
			return err
		}
	} else {
		printCheckReport(g, rep)
	}
	if !rep.OK() {
		return &exitError{code: exitCorrupt, err: fmt.Errorf("repository damaged: %d problems, %d files affected", len(rep.Problems), len(rep.Affected))}
	}
	return nil
}

// checkListed is how many problems per pack, and affected files per
// snapshot, the text report of check lists before counting the rest.
const checkListed = 10

// damagedObjects names the repository files the problems are in, each
// once, in the order found: what an operator replaces or repairs.
func damagedObjects(rep *checker.Report) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range rep.Problems {
		name := p.Object
		if p.Pack != "" {
			name = "data/" + p.Pack
		}
		if !isRepoFile(name) || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, name)
	}
	return out
}

// isRepoFile reports whether a problem's object names a file of the
// repository (not a snapshot's file or a blob).
func isRepoFile(name string) bool {
	for _, dir := range []string{"data/", "index/", "snapshots/", "keys/"} {
		if strings.HasPrefix(name, dir) {
			return true
		}
	}
	return name == "config"
}

func printCheckReport(g *globalOptions, rep *checker.Report) {
	for _, w := range rep.Warnings {
		fmt.Fprintf(g.stdout, "warning: %s\n", escape(w))
	}
	// A damaged pack of a big repository makes thousands of problems
	// (one per blob) and affects hundreds of thousands of files (every
	// snapshot's): the text report lists the first few of each pack and
	// of each snapshot and counts the rest; --json lists everything.
	perGroup := map[string]int{}
	for _, p := range rep.Problems {
		group := p.Kind + " " + p.Pack
		if perGroup[group]++; p.Pack != "" && perGroup[group] > checkListed {
			continue
		}
		fmt.Fprintf(g.stdout, "error: %s: %s\n", p.Kind, escape(p.Message))
	}
	for _, p := range rep.Problems {
		group := p.Kind + " " + p.Pack
		if n := perGroup[group]; p.Pack != "" && n > checkListed {
			fmt.Fprintf(g.stdout, "error: %s: %d more in pack %s (all of them with --json)\n", p.Kind, n-checkListed, p.Pack)
			perGroup[group] = 0
		}
	}
	perSnap := map[string]int{}
	for _, a := range rep.Affected {
		if perSnap[a.Snapshot]++; perSnap[a.Snapshot] <= checkListed {
			fmt.Fprintf(g.stdout, "affected: snapshot %s (policy %s) file %s\n", a.Snapshot, escape(a.Policy), escape(a.Path))
		}
	}
	for _, a := range rep.Affected {
		if n := perSnap[a.Snapshot]; n > checkListed {
			fmt.Fprintf(g.stdout, "affected: snapshot %s (policy %s): %d more files (all of them with --json)\n", a.Snapshot, escape(a.Policy), n-checkListed)
			perSnap[a.Snapshot] = 0
		}
	}
	if damaged := damagedObjects(rep); len(damaged) > 0 {
		for i := range damaged {
			damaged[i] = escape(damaged[i])
		}
		fmt.Fprintf(g.stdout, "damaged: %s\n", strings.Join(damaged, ", "))
	}
	if rep.Recorded != "" {
		fmt.Fprintf(g.stdout, "recorded the damage found in %s: backups store the damaged blobs again instead of reusing them\n", rep.Recorded)
	}
	for _, s := range rep.Suggestions {
		fmt.Fprintf(g.stdout, "suggestion: run %s\n", s)
	}
	if !g.quiet {
		fmt.Fprintf(g.stdout, "checked %d snapshots, %d packs; read back %d packs, %d blobs: %d problems\n",
			rep.Snapshots, rep.Packs, rep.PacksRead, rep.BlobsChecked, len(rep.Problems))
	}
}
