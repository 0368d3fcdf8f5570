// Command genvolume generates, mutates and crashes service-mesh volume sets
// with package github.com/meshbackup/backupd/bench/workload.
//
//	genvolume -root DIR [-proxies N] [-consul N] [-seed S] [-scale F] [-rotate BYTES] [-mutate STEPS [-active FROM:TO]] [-crash [-crash-proxy I]]
//
// If DIR does not hold a volume set yet it is generated first (DIR must be
// empty or absent); otherwise the options recorded at generation are used
// for flags not given explicitly. Then -mutate STEPS simulated minutes of
// activity are applied (with -active FROM:TO only proxies FROM to TO-1 are
// active, and no Consul server), and with -crash the container of proxy -crash-proxy
// is crashed. A summary (entries, bytes, time) is printed.
//
// Imports: bench/workload only; no engine, collector or exporter code.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/meshbackup/backupd/bench/workload"
)

const stateFile = ".workload-state.json"

func main() {
	root := flag.String("root", "", "volume set directory (required)")
	proxies := flag.Int("proxies", 20, "number of proxies")
	consul := flag.Int("consul", 3, "number of Consul servers")
	seed := flag.Uint64("seed", 0, "content seed")
	scale := flag.Float64("scale", 1, "size multiplier for big files")
	rotate := flag.Int64("rotate", 10<<20, "access.log rotation size in bytes")
	mutate := flag.Int("mutate", 0, "simulated minutes of activity to apply")
	crash := flag.Bool("crash", false, "crash proxy -crash-proxy after mutating")
	crashProxy := flag.Int("crash-proxy", 0, "proxy index crashed by -crash")
	active := flag.String("active", "", "with -mutate: only proxies FROM:TO (TO excluded) are active, Consul is idle")
	flag.Parse()
	if *root == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	opt := workload.Options{Proxies: *proxies, ConsulServers: *consul, Seed: *seed, Scale: *scale, LogRotateBytes: *rotate}
	start := time.Now()
	existing, err := recordedOptions(*root)
	if err != nil {
		fail(err)
	}
	if existing != nil {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["proxies"] {
			opt.Proxies = existing.Proxies
		}
		if !set["consul"] {
			opt.ConsulServers = existing.ConsulServers
		}
		if !set["seed"] {
			opt.Seed = existing.Seed
		}
		if !set["scale"] {
			opt.Scale = existing.Scale
		}
		if !set["rotate"] {
			opt.LogRotateBytes = existing.LogRotateBytes
		}
		fmt.Printf("using existing volume set %s\n", *root)
	} else {
		if err := workload.Generate(*root, opt); err != nil {
			fail(err)
		}
		fmt.Printf("generated %s in %v\n", *root, time.Since(start).Round(time.Millisecond))
	}
	if *mutate > 0 {
		t := time.Now()
		var act workload.Activity
		if *active != "" {
			var from, to int
			if _, err := fmt.Sscanf(*active, "%d:%d", &from, &to); err != nil || from < 0 || to <= from {
				fail(fmt.Errorf("-active %q: want FROM:TO with 0 <= FROM < TO", *active))
			}
			act.Proxy = func(i int) bool { return i >= from && i < to }
			act.Server = func(int) bool { return false }
		}
		if err := workload.MutateSome(*root, opt, *mutate, act); err != nil {
			fail(err)
		}
		fmt.Printf("mutated %d steps in %v\n", *mutate, time.Since(t).Round(time.Millisecond))
	}
	if *crash {
		if err := workload.Crash(*root, opt, *crashProxy); err != nil {
			fail(err)
		}
		fmt.Printf("crashed proxy %d\n", *crashProxy)
	}
	var files, dirs, links, other int
	var bytes int64
	err = filepath.WalkDir(*root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch t := d.Type(); {
		case t.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			files++
			bytes += fi.Size()
		case t.IsDir():
			dirs++
		case t&fs.ModeSymlink != 0:
			links++
		default:
			other++
		}
		return nil
	})
	if err != nil {
		fail(err)
	}
	fmt.Printf("%d files (%.1f MiB), %d dirs, %d symlinks, %d other; total %v\n",
		files, float64(bytes)/(1<<20), dirs, links, other, time.Since(start).Round(time.Millisecond))
}

// recordedOptions returns the Options recorded in root's state file, or nil
// if root holds no volume set.
func recordedOptions(root string) (*workload.Options, error) {
	b, err := os.ReadFile(filepath.Join(root, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st struct {
		Options workload.Options `json:"options"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", stateFile, err)
	}
	return &st.Options, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "genvolume:", err)
	os.Exit(1)
}
