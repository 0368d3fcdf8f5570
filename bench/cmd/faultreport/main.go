// Command faultreport renders the results of the fault benchmark again
// from a faults.json: the report faults.md, the charts faults-*.svg and
// faults-*.png, and the OpenMetrics file faults.om, next to the file read
// (or into -out DIR). faults.json itself is not rewritten.
//
//	go run ./bench/cmd/faultreport [-out DIR] bench/results/faults.json
//
// Imports: bench/faults only; no engine, collector or exporter code.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/meshbackup/backupd/bench/faults"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "faultreport:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("faultreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory to write the renderings into, made if missing (default: the directory of FILE)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: faultreport [-out DIR] FILE\n\nRenders faults.md, faults-*.svg, faults-*.png and faults.om from FILE, a faults.json of the fault benchmark.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("want one faults.json, got %d arguments", fs.NArg())
	}
	path := fs.Arg(0)
	r, err := faults.Read(path)
	if err != nil {
		return err
	}
	dir := *out
	if dir == "" {
		dir = filepath.Dir(path)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	names, err := faults.Render(dir, r)
	for _, n := range names {
		fmt.Fprintln(stdout, filepath.Join(dir, n))
	}
	return err
}
