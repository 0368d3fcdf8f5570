package workload

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	minLine = 300 // access-log line length bounds, newline included
	maxLine = 500
)

// logGen produces Envoy-style access-log lines with increasing seq numbers.
type logGen struct {
	r     *rand.Rand
	p     *proxyInfo
	seq   uint64  // seq of the next line
	ms    float64 // timestamp of the next line (Unix ms)
	dt    float64 // mean ms between lines
	stop  float64 // timestamps never pass this (0: no limit)
	suf   []byte
	trace []byte // trace id of the previous line
}

// line appends one line (with '\n') to b.
func (g *logGen) line(b []byte) []byte {
	r := g.r
	start := len(b)
	target := between(r, minLine, maxLine)

	ms := g.ms
	if g.stop > 0 && ms > g.stop {
		ms = g.stop
	}
	b = append(b, '[')
	b = time.UnixMilli(int64(ms)).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, "] seq="...)
	b = strconv.AppendUint(b, g.seq, 10)
	g.seq++
	g.ms += g.dt * (0.5 + r.Float64())

	// Request line.
	b = append(b, ` "`...)
	b = append(b, pick(r, methods)...)
	b = append(b, ' ')
	root := pick(r, pathRoots)
	b = append(b, root...)
	if strings.HasSuffix(root, "/") {
		b = append(b, pick(r, pathWords)...)
		if r.IntN(3) > 0 {
			b = append(b, '/')
			b = strconv.AppendInt(b, int64(r.IntN(200000)), 10)
			if r.IntN(2) == 0 {
				b = append(b, '/')
				b = append(b, pick(r, pathWords)...)
			}
		}
		if r.IntN(3) == 0 {
			b = append(b, '?')
			b = append(b, pick(r, queryWords)...)
			b = append(b, '=')
			b = strconv.AppendInt(b, int64(r.IntN(100)), 10)
		}
	}
	b = append(b, ' ')
	b = append(b, pick(r, protocols)...)
	b = append(b, '"', ' ')

	// Response code, flags, details, bytes, durations.
	code := statusCodes[r.IntN(len(statusCodes))]
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if code >= 500 {
		b = append(b, pick(r, respFlags)...)
		b = append(b, ' ')
		b = append(b, pick(r, codeDetails)...)
	} else {
		b = append(b, "- via_upstream"...)
	}
	b = append(b, ` - "-" `...)
	b = strconv.AppendInt(b, int64(r.IntN(4096)*r.IntN(2)), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(r.IntN(65536)), 10)
	b = append(b, ' ')
	dur := int64(r.ExpFloat64() * 25)
	b = strconv.AppendInt(b, dur, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, dur*9/10, 10)
	b = append(b, ` "`...)
	b = appendPoolIP(b, seedOf(g.p.idx64(), 1, uint64(r.IntN(512))))
	b = append(b, `" "`...)

	// Everything after the user agent goes to g.suf so that the agent can
	// be cut to keep the line within maxLine.
	s := g.suf[:0]
	s = append(s, `" "`...)
	s = appendUUID(s, r)
	s = append(s, `" "`...)
	svc, ns, port := pick(r, serviceNames), pick(r, namespaces), ports[r.IntN(len(ports))]
	s = append(s, svc...)
	s = append(s, '.')
	s = append(s, ns...)
	s = append(s, ':')
	s = strconv.AppendInt(s, int64(port), 10)
	s = append(s, `" "`...)
	s = appendPoolIP(s, seedOf(uint64(len(svc)), uint64(svc[0]), uint64(svc[len(svc)-1]), uint64(len(ns)), uint64(ns[0]), uint64(ns[1]), uint64(r.IntN(4))))
	s = append(s, ':')
	s = strconv.AppendInt(s, int64(port), 10)
	s = append(s, `" outbound|`...)
	s = strconv.AppendInt(s, int64(port), 10)
	s = append(s, "||"...)
	s = append(s, svc...)
	s = append(s, '.')
	s = append(s, ns...)
	s = append(s, ".svc.cluster.local "...)
	s = append(s, g.p.ip...)
	s = append(s, ':')
	s = strconv.AppendInt(s, int64(32768+r.IntN(28000)), 10)
	s = append(s, " - default traceparent=00-"...)
	if len(g.trace) == 0 || r.IntN(100) < 40 {
		g.trace = appendHex(g.trace[:0], r, 32) // new trace; otherwise another span of the last one
	}
	s = append(s, g.trace...)
	s = append(s, '-')
	s = appendHex(s, r, 16)
	s = append(s, "-01"...)
	g.suf = s

	ua := pick(r, userAgents)
	if room := maxLine - 1 - (len(b) - start) - len(s); len(ua) > room {
		ua = ua[:max(room, 0)]
	}
	b = append(b, ua...)
	b = append(b, s...)

	// Pad with baggage up to the target length.
	if n := len(b) - start; n < target-1 {
		b = append(b, ` baggage="`...)
		for len(b)-start < target-2 {
			b = append(b, pick(r, baggageKeys)...)
			b = append(b, '=')
			b = append(b, pick(r, baggageVals)...)
			b = append(b, ',')
		}
		b = b[:start+target-2]
		b = append(b, '"')
	}
	if len(b)-start > maxLine-1 { // cannot happen with the vocabularies above
		b = b[:start+maxLine-1]
	}
	return append(b, '\n')
}

// logWriter appends to access.log and rotates it past limit bytes.
type logWriter struct {
	dir   string
	limit int64
	f     *os.File
	w     *bufio.Writer
	size  int64
}

func openLog(dir string, limit int64) (*logWriter, error) {
	l := &logWriter{dir: dir, limit: limit}
	if err := l.open(); err != nil {
		return nil, err
	}
	l.w = bufio.NewWriterSize(l.f, 256<<10)
	return l, nil
}

func (l *logWriter) open() error {
	f, err := openAppend(filepath.Join(l.dir, accessLogName))
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	return nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (l *logWriter) write(line []byte) error {
	if _, err := l.w.Write(line); err != nil {
		return err
	}
	l.size += int64(len(line))
	if l.limit > 0 && l.size >= l.limit {
		return l.rotate()
	}
	return nil
}

func (l *logWriter) rotate() error {
	if err := l.w.Flush(); err != nil {
		return err
	}
	if err := l.f.Close(); err != nil {
		return err
	}
	if err := rotateLogs(l.dir); err != nil {
		return err
	}
	if err := l.open(); err != nil {
		return err
	}
	l.w.Reset(l.f)
	return nil
}

func (l *logWriter) close() error {
	err := l.w.Flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// rotateLogs performs the logrotate rename chain in dir: access.log.5 is
// removed, access.log.N becomes access.log.N+1, access.log becomes
// access.log.1 and a new empty access.log (0644) is created.
func rotateLogs(dir string) error {
	gen := func(i int) string {
		if i == 0 {
			return filepath.Join(dir, accessLogName)
		}
		return filepath.Join(dir, accessLogName+"."+strconv.Itoa(i))
	}
	if err := os.Remove(gen(keptGenerations)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for i := keptGenerations - 1; i >= 0; i-- {
		if err := os.Rename(gen(i), gen(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	f, err := openAppend(gen(0))
	if err != nil {
		return err
	}
	return f.Close()
}

// genAccessLog writes the access-log history of a proxy at generation time.
func genAccessLog(dir string, opt Options, p *proxyInfo, ps *proxyState, clockMs int64) error {
	r := newRand(opt.Seed, tagLogHist, uint64(p.idx))
	perMin := p.rate * opt.Scale
	total := perMin * p.ageMin
	keep := total
	if maxLines := maxLogHistoryGen * float64(opt.LogRotateBytes) / 400; keep > maxLines {
		keep = maxLines
	}
	skip := total - keep
	dt := float64(minuteMs) / perMin
	podStart := float64(clockMs) - p.ageMin*minuteMs
	g := &logGen{r: r, p: p, seq: 1 + uint64(skip), ms: podStart + skip*dt, dt: dt, stop: float64(clockMs)}
	lw, err := openLog(dir, opt.LogRotateBytes)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, 1024)
	for i := 0; i < int(keep); i++ {
		buf = g.line(buf[:0])
		if err := lw.write(buf); err != nil {
			lw.close()
			return err
		}
	}
	ps.NextSeq = g.seq
	return lw.close()
}

// appendStepLogs appends one simulated minute of access log (at least one line).
func appendStepLogs(lw *logWriter, g *logGen, r *rand.Rand, opt Options, p *proxyInfo, buf []byte) ([]byte, error) {
	n := int(math.Floor(p.rate*opt.Scale + r.Float64()))
	if n < 1 {
		n = 1
	}
	g.dt = float64(minuteMs) / float64(n)
	for i := 0; i < n; i++ {
		buf = g.line(buf[:0])
		if err := lw.write(buf); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// parseSeq extracts N from the "seq=N " field of a line.
func parseSeq(line []byte) (uint64, bool) {
	i := bytes.Index(line, []byte("seq="))
	if i < 0 {
		return 0, false
	}
	j := i + 4
	k := j
	for k < len(line) && line[k] >= '0' && line[k] <= '9' {
		k++
	}
	if k == j || k == len(line) || (line[k] != ' ' && line[k] != '\n') {
		return 0, false
	}
	n, err := strconv.ParseUint(string(line[j:k]), 10, 64)
	return n, err == nil
}

// lastSeqInFile returns the seq of the last complete line of path.
func lastSeqInFile(path string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return 0, false
	}
	n := min(fi.Size(), 16<<10)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, fi.Size()-n); err != nil && err != io.EOF {
		return 0, false
	}
	end := bytes.LastIndexByte(buf, '\n')
	for end >= 0 {
		st := bytes.LastIndexByte(buf[:end], '\n') + 1
		if st == 0 && n < fi.Size() {
			return 0, false // the line may be cut
		}
		if s, ok := parseSeq(buf[st : end+1]); ok {
			return s, true
		}
		end = st - 1
	}
	return 0, false
}

// nextSeq is the seq to use for the next line of the proxy in dir: past both
// the recorded value and anything found at the end of the live logs.
func nextSeq(dir string, recorded uint64) uint64 {
	next := recorded
	for _, name := range []string{accessLogName, accessLogName + ".1"} {
		if s, ok := lastSeqInFile(filepath.Join(dir, name)); ok && s+1 > next {
			next = s + 1
		}
	}
	return next
}

// Seqs reads the access.log* files of one proxy directory and returns the seq
// numbers of all complete (newline-terminated) lines, oldest generation
// first (access.log.N, ..., access.log.1, access.log) and in file order, so
// an intact set of logs yields a strictly increasing, gap-free sequence.
// Files that are missing are skipped; other names are ignored.
func Seqs(proxyDir string) ([]uint64, error) {
	ents, err := os.ReadDir(proxyDir)
	if err != nil {
		return nil, err
	}
	type gen struct {
		n    int
		name string
	}
	var gens []gen
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		if name == accessLogName {
			gens = append(gens, gen{0, name})
		} else if rest, ok := strings.CutPrefix(name, accessLogName+"."); ok {
			if n, err := strconv.Atoi(rest); err == nil && n > 0 && strconv.Itoa(n) == rest {
				gens = append(gens, gen{n, name})
			}
		}
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i].n > gens[j].n })
	var out []uint64
	for _, g := range gens {
		f, err := os.Open(filepath.Join(proxyDir, g.name))
		if err != nil {
			return nil, err
		}
		br := bufio.NewReaderSize(f, 64<<10)
		var long []byte
		for {
			line, err := br.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				long = append(long, line...)
				continue
			}
			if err != nil {
				break // EOF: a trailing line without newline is incomplete
			}
			if long != nil {
				line = append(long, line...)
				long = nil
			}
			if s, ok := parseSeq(line); ok {
				out = append(out, s)
			}
		}
		f.Close()
	}
	return out, nil
}

// Appender appends access-log lines to one proxy's access.log and rotates it,
// for tests that race a backup against a live writer. Its seq numbers
// continue those of the tree; Close records the next seq in the state file.
// An Appender is safe for concurrent use, but must not be used concurrently
// with Mutate or Crash on the same proxy.
type Appender struct {
	mu    sync.Mutex
	root  string
	proxy int
	dir   string
	info  proxyInfo
	gen   *logGen
	f     *os.File
	buf   []byte
}

// NewAppender opens proxy's access.log (index in [0, Proxies)) of the volume
// set at root, which must have been generated with opt.
func NewAppender(root string, opt Options, proxy int) (*Appender, error) {
	opt, err := opt.normalize()
	if err != nil {
		return nil, err
	}
	stateMu.Lock()
	st, err := loadState(root)
	if err == nil {
		err = checkState(st, opt)
	}
	if err == nil && (proxy < 0 || proxy >= len(st.Proxies)) {
		err = fmt.Errorf("workload: proxy %d out of range [0,%d)", proxy, len(st.Proxies))
	}
	if err != nil {
		stateMu.Unlock()
		return nil, err
	}
	dir := filepath.Join(root, filepath.FromSlash(st.Proxies[proxy].Dir))
	next := nextSeq(dir, st.Proxies[proxy].NextSeq)
	stateMu.Unlock()

	a := &Appender{root: root, proxy: proxy, dir: dir, info: layout(opt)[proxy]}
	a.gen = &logGen{r: newRand(opt.Seed, tagAppender, uint64(proxy), next), p: &a.info,
		seq: next, ms: float64(st.ClockMs), dt: 5}
	if a.f, err = openAppend(filepath.Join(dir, accessLogName)); err != nil {
		return nil, err
	}
	return a, nil
}

// Append appends n lines to access.log with a single write.
func (a *Appender) Append(n int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return errors.New("workload: appender closed")
	}
	a.buf = a.buf[:0]
	for i := 0; i < n; i++ {
		a.buf = a.gen.line(a.buf)
	}
	_, err := a.f.Write(a.buf)
	return err
}

// Rotate rotates the logs like logrotate: access.log becomes access.log.1,
// older generations shift up to access.log.5 (the oldest is dropped), and a
// new empty access.log is opened for further appends.
func (a *Appender) Rotate() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return errors.New("workload: appender closed")
	}
	if err := a.f.Close(); err != nil {
		return err
	}
	a.f = nil
	if err := rotateLogs(a.dir); err != nil {
		return err
	}
	f, err := openAppend(filepath.Join(a.dir, accessLogName))
	if err != nil {
		return err
	}
	a.f = f
	return nil
}

// Close closes the log and records the next seq number in the state file.
func (a *Appender) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	stateMu.Lock()
	defer stateMu.Unlock()
	st, lerr := loadState(a.root)
	if lerr != nil {
		return errors.Join(err, lerr)
	}
	if ps := &st.Proxies[a.proxy]; a.gen.seq > ps.NextSeq {
		ps.NextSeq = a.gen.seq
	}
	return errors.Join(err, saveState(a.root, st))
}
