package workload

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// genProxy creates one proxy directory.
func genProxy(root string, opt Options, p *proxyInfo, ps *proxyState, clockMs int64) error {
	dir := filepath.Join(root, filepath.FromSlash(p.dir))
	ps.Dir = p.dir
	subdirs := []string{"", "bin", "certs", "serviceaccount", "xds", "xds/eds"}
	if p.tap {
		subdirs = append(subdirs, "tap")
	}
	for _, s := range subdirs {
		if err := mkdir(filepath.Join(dir, filepath.FromSlash(s))); err != nil {
			return err
		}
	}
	if err := genAccessLog(dir, opt, p, ps, clockMs); err != nil {
		return err
	}
	r := newRand(opt.Seed, tagMisc, uint64(p.idx))
	ps.StatsEpochMs = clockMs - int64(p.ageMin*minuteMs)
	files := []struct {
		name string
		data []byte
		perm fs.FileMode
	}{
		{"config_dump.json", genConfigDump(opt, p, configDumpBytes(opt, p), clockMs), 0o644},
		{"stats.txt", genStats(opt, p, clockMs, ps.StatsEpochMs), 0o644},
		{"bootstrap.json", genBootstrap(opt, p, 0, ps.StatsEpochMs), 0o644},
		{"envoy.env", genEnv(p), 0o600},
		{"ready", nil, 0o644},
		{"bin/healthcheck.sh", genHealthcheck(p), 0o755},
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(f.name)), f.data, f.perm); err != nil {
			return err
		}
	}
	if err := writeCerts(dir, opt, p, 0, false); err != nil {
		return err
	}
	ps.CertDueMs = clockMs + int64(betweenF(r, 5*minuteMs, 12*hourMs))
	if err := writeProjected(dir, opt, p, 0, clockMs-int64(betweenF(r, 0, 40*minuteMs))); err != nil {
		return err
	}
	ps.TokenDueMs = clockMs + int64(betweenF(r, 5*minuteMs, 48*minuteMs))

	neds := between(r, 20, 50)
	for k := 0; k < neds; k++ {
		u := upstreamFor(opt.Seed, p.idx, k)
		path := filepath.Join(dir, "xds", "eds", edsName(u))
		data := genEDS(newRand(opt.Seed, tagEDS, uint64(p.idx), uint64(k)), u, clockMs-int64(r.IntN(hourMs)))
		if err := writeFile(path, data, 0o644); err != nil {
			return err
		}
	}
	if p.tap {
		for n := 1; n <= between(r, 5, 15); n++ {
			data := genTap(newRand(opt.Seed, tagTap, uint64(p.idx), uint64(n)), opt.Seed, p, clockMs-int64(r.IntN(hourMs)))
			if err := writeFile(filepath.Join(dir, "tap", tapName(n)), data, 0o644); err != nil {
				return err
			}
		}
	}
	return makeSocket(filepath.Join(dir, "admin.sock"))
}

func tapName(n int) string { return "trace-" + strconv.Itoa(n) + ".json" }

func edsName(u upstream) string {
	return u.svc + "." + u.ns + "_" + strconv.Itoa(u.port) + ".json"
}

func parseEDSName(name string) (upstream, bool) {
	base, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return upstream{}, false
	}
	i := strings.LastIndexByte(base, '_')
	j := strings.IndexByte(base, '.')
	if i < 0 || j < 0 || j > i {
		return upstream{}, false
	}
	port, err := strconv.Atoi(base[i+1:])
	if err != nil {
		return upstream{}, false
	}
	return upstream{svc: base[:j], ns: base[j+1 : i], port: port}, true
}

func genEnv(p *proxyInfo) []byte {
	return []byte("ISTIO_META_CLUSTER_ID=Kubernetes\n" +
		"POD_NAME=" + p.pod + "\n" +
		"POD_NAMESPACE=" + p.ns + "\n" +
		"INSTANCE_IP=" + p.ip + "\n" +
		"SERVICE_ACCOUNT=" + p.app + "\n" +
		"ISTIO_META_WORKLOAD_NAME=" + p.app + "\n" +
		"ISTIO_META_OWNER=kubernetes://apis/apps/v1/namespaces/" + p.ns + "/deployments/" + p.app + "\n" +
		"ISTIO_META_MESH_ID=cluster.local\nTRUST_DOMAIN=cluster.local\n" +
		"CA_ADDR=istiod.istio-system.svc:15012\nJWT_POLICY=third-party-jwt\n" +
		`PROXY_CONFIG={"discoveryAddress":"istiod.istio-system.svc:15012","tracing":{"zipkin":{"address":"zipkin.istio-system:9411"}}}` + "\n")
}

func genHealthcheck(p *proxyInfo) []byte {
	return []byte("#!/bin/sh\n# readiness probe for " + p.pod + "." + p.ns + "\nset -eu\n" +
		"exec curl -fsS --max-time 2 --unix-socket /etc/istio/proxy/admin.sock http://localhost/ready >/dev/null\n")
}

// ---------------------------------------------------------------- PEM

// fakeDER returns n bytes that look like a DER certificate or key.
func fakeDER(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	fillRandom(b, r)
	b[0], b[1] = 0x30, 0x82
	binary.BigEndian.PutUint16(b[2:], uint16(n-4))
	copy(b[4:], "\x30\x82\x02\x0a\xa0\x03\x02\x01\x02\x02\x10")
	return b
}

func appendPEM(b []byte, typ string, der []byte) []byte {
	b = append(b, "-----BEGIN "+typ+"-----\n"...)
	enc := base64.StdEncoding.EncodeToString(der)
	for len(enc) > 64 {
		b = append(b, enc[:64]...)
		b = append(b, '\n')
		enc = enc[64:]
	}
	b = append(b, enc...)
	b = append(b, '\n')
	return append(b, "-----END "+typ+"-----\n"...)
}

// writeCerts writes the workload certificate generation gen. The root and
// intermediate certificates are shared by all proxies of a seed.
func writeCerts(dir string, opt Options, p *proxyInfo, gen int, atomic bool) error {
	r := newRand(opt.Seed, tagCert, uint64(p.idx), uint64(gen))
	leaf := fakeDER(r, between(r, 700, 820))
	key := fakeDER(r, between(r, 1214, 1218))
	inter := fakeDER(newRand(opt.Seed, tagRoot, 1), 900)
	rootc := fakeDER(newRand(opt.Seed, tagRoot, 2), 980)
	files := []struct {
		name string
		data []byte
		perm fs.FileMode
	}{
		{"cert-chain.pem", appendPEM(appendPEM(nil, "CERTIFICATE", leaf), "CERTIFICATE", inter), 0o644},
		{"key.pem", appendPEM(nil, "PRIVATE KEY", key), 0o600},
		{"root-cert.pem", appendPEM(nil, "CERTIFICATE", rootc), 0o644},
	}
	for _, f := range files {
		path := filepath.Join(dir, "certs", f.name)
		write := writeFile
		if atomic {
			write = writeFileAtomic
		}
		if err := write(path, f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// ---------------------------------------------------------------- projected volume

func genToken(opt Options, p *proxyInfo, gen int, clockMs int64) []byte {
	r := newRand(opt.Seed, tagToken, uint64(p.idx), uint64(gen))
	enc := base64.RawURLEncoding
	hdr := `{"alg":"RS256","kid":"` + string(appendHex(nil, newRand(opt.Seed, tagRoot, 4), 40)) + `"}`
	iat := clockMs / 1000
	payload := fmt.Sprintf(`{"aud":["istio-ca"],"exp":%d,"iat":%d,"iss":"https://kubernetes.default.svc.cluster.local",`+
		`"kubernetes.io":{"namespace":%q,"pod":{"name":%q,"uid":%q},"serviceaccount":{"name":%q,"uid":%q}},"nbf":%d,"sub":"system:serviceaccount:%s:%s"}`,
		iat+3600, iat, p.ns, p.pod, uuidString(r), p.app, uuidString(newRand(opt.Seed, tagToken, uint64(p.idx))), iat, p.ns, p.app)
	sig := make([]byte, 256)
	fillRandom(sig, r)
	return []byte(enc.EncodeToString([]byte(hdr)) + "." + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(sig))
}

// writeProjected (re)writes the Kubernetes projected service-account volume
// the way kubelet's atomic writer does: a new ..<timestamp> directory, a
// ..data_tmp symlink renamed over ..data, user-visible symlinks into ..data,
// and removal of the previous timestamped directory.
func writeProjected(dir string, opt Options, p *proxyInfo, gen int, clockMs int64) error {
	sa := filepath.Join(dir, "serviceaccount")
	r := newRand(opt.Seed, tagToken, uint64(p.idx), uint64(gen), 1)
	ts := ".." + time.UnixMilli(clockMs).UTC().Format("2006_01_02_15_04_05.") + strconv.Itoa(100000000+r.IntN(900000000))
	tsDir := filepath.Join(sa, ts)
	if err := mkdir(tsDir); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		perm fs.FileMode
	}{
		{"ca.crt", appendPEM(nil, "CERTIFICATE", fakeDER(newRand(opt.Seed, tagRoot, 3), 1050)), 0o644},
		{"namespace", []byte(p.ns), 0o644},
		{"token", genToken(opt, p, gen, clockMs), 0o600},
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(tsDir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	data := filepath.Join(sa, "..data")
	old, _ := os.Readlink(data)
	tmp := filepath.Join(sa, "..data_tmp")
	os.Remove(tmp)
	if err := os.Symlink(ts, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, data); err != nil {
		return err
	}
	for _, f := range files {
		link := filepath.Join(sa, f.name)
		if _, err := os.Lstat(link); errors.Is(err, fs.ErrNotExist) {
			if err := os.Symlink("..data/"+f.name, link); err != nil {
				return err
			}
		}
	}
	if old != "" && old != ts && strings.HasPrefix(old, "..") {
		return os.RemoveAll(filepath.Join(sa, old))
	}
	return nil
}
