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
packs, blobs, snapshots and files affected.`,
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
		if err := g.printJSON(rep); err != nil {
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

func printCheckReport(g *globalOptions, rep *checker.Report) {
	for _, w := range rep.Warnings {
		fmt.Fprintf(g.stdout, "warning: %s\n", escape(w))
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(g.stdout, "error: %s: %s\n", p.Kind, escape(p.Message))
	}
	for _, a := range rep.Affected {
		fmt.Fprintf(g.stdout, "affected: snapshot %s (policy %s) file %s\n", a.Snapshot, escape(a.Policy), escape(a.Path))
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
