package workload

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestZZMeasure(t *testing.T) {
	root := os.Getenv("WL")
	if root == "" {
		t.Skip()
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	pats := []string{"proxies/gateways-*/access.log*", "proxies/*-[0-9]/access.log", "proxies/*-1[0-9]/config_dump.json", "proxies/*-1[0-9]/stats.txt",
		"consul/server-0/raft/raft.db", "consul/*/raft/snapshots/*/state.bin", "proxies/*-1[0-9]/xds/eds/*", "proxies/*-1[0-9]/bootstrap.json", "proxies/*/tap/*", "proxies/*-1[0-9]/certs/*"}
	for _, p := range pats {
		files, _ := filepath.Glob(filepath.Join(root, p))
		var in, out int
		for _, f := range files {
			b, _ := os.ReadFile(f)
			in += len(b)
			out += len(enc.EncodeAll(b, nil))
		}
		fmt.Printf("%-45s %5d files %9.1f MB ratio %.2f\n", p, len(files), float64(in)/1e6, float64(in)/float64(max(out, 1)))
	}
}
