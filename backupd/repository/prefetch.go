package repository

import (
	"cmp"
	"context"
	"io"
	"slices"
	"sync"

	"github.com/meshbackup/backupd/backupd/backend"
)

// PrefetchOptions tune a Prefetcher. Zero values take the defaults.
type PrefetchOptions struct {
	// Reads bounds the ranged reads in flight: 8, since an object store
	// answers each after tens of milliseconds.
	Reads int
	// Budget bounds the bytes of span buffers held at once, in flight,
	// waiting for their consumers or kept for reuse: 16 MiB, which keeps
	// 8 spans of MaxSpan in flight and a restore's live heap well under
	// the process's soft memory limit (README, Memory): at 32 MiB the
	// garbage collector ran hundreds of times per restore.
	Budget int64
	// MaxSpan caps one ranged read: 2 MiB. Larger spans save requests but
	// hold memory until their last blob is taken.
	MaxSpan int64
	// MaxGap is the largest run of unneeded bytes a span reads through
	// rather than splitting in two: 256 KiB, about what one more request
	// costs in time.
	MaxGap int64
	// Window is how far ahead of the first blob not yet read, in sealed
	// bytes of the plan, the blobs of one span may be used: Budget. A
	// blob used again later (deduplicated content) is read again then,
	// rather than held. On the S3 bench set (packs written by two
	// readers, restored in tree order) Budget/2 made 75 reads, Budget 60,
	// 2 × Budget as many but more of them blobs read alone (budget full).
	Window int64
}

func (o *PrefetchOptions) applyDefaults() {
	if o.Reads <= 0 {
		o.Reads = 8
	}
	if o.Budget <= 0 {
		o.Budget = 16 << 20
	}
	if o.MaxSpan <= 0 {
		o.MaxSpan = 2 << 20
	}
	o.MaxSpan = min(o.MaxSpan, o.Budget)
	if o.MaxGap <= 0 {
		o.MaxGap = 256 << 10
	}
	if o.Window <= 0 {
		o.Window = o.Budget
	}
}

// PrefetchStats count what a Prefetcher did.
type PrefetchStats struct {
	// Spans is the number of ranged reads of spans; SpanBytes their bytes.
	Spans, SpanBytes int64
	// Alone counts blobs read alone through LoadBlob: not in a span (the
	// budget was full, or the blob was not planned), or their span failed
	// or did not verify.
	Alone int64
	// Failed counts span reads that failed (their blobs were read alone).
	Failed int64
	// PeakBytes is the most bytes of span buffers held at once; it never
	// exceeds Budget.
	PeakBytes int64
}

// Use states.
const (
	useWaiting uint8 = iota // planned, in no span yet
	useInSpan               // assigned to a span
	useDone                 // taken, or dropped (its file is done)
	useDirect               // read alone through LoadBlob (unindexed, or not a data blob)
)

// use is one planned read of a data blob: the i-th chunk of a file.
type use struct {
	id     ID
	pack   uint32 // into Prefetcher.packs
	offset uint32
	length uint32
	rawLen uint32
	flags  uint8
	state  uint8
	span   int32 // into Prefetcher.spans, when useInSpan
}

// Span states.
const (
	spanFetching uint8 = iota
	spanReady
	spanFailed
)

type span struct {
	pack   uint32
	offset int64
	buf    []byte // len is the span's length
	refs   int    // uses assigned and not yet done
	state  uint8
}

// Prefetcher reads the data blobs of a plan (the chunks of files, in the
// order consumers will ask for them) in spans: runs of needed blobs of one
// pack in offset order, merged across gaps up to MaxGap, each at most
// MaxSpan, fetched ahead of the consumers with up to Reads ranged reads in
// flight and at most Budget bytes of buffers held. Every blob handed out
// is authenticated and checked against its id (OpenBlob), as LoadBlob
// does; a blob that fails is read again alone through LoadBlob (whose
// backend retries bad bytes), so corruption is reported exactly as
// LoadBlob reports it, never returned.
//
// Use: AddFile for every file, in order; Start; Blob for each chunk, from
// any number of goroutines; Done for each file when it is finished or
// abandoned, so its untaken chunks release their spans; Close.
//
// Invariant: a consumer never waits on a span that may never come: when
// the budget is full and no read is in flight, a consumer whose chunk is
// in no span reads it alone (the spans held wait for other consumers).
type Prefetcher struct {
	r   *Repo
	opt PrefetchOptions

	// Plan, fixed by Start: uses in order, the first use of each file
	// (files[i]..files[i+1]), and where each pack's uses are.
	uses   []use
	files  []int32
	packs  []ID
	packNo map[ID]uint32
	byPack [][]int32 // use positions per pack, ascending
	cum    []int64   // cum[i]: sealed bytes of uses before i

	mu       sync.Mutex
	cond     *sync.Cond
	started  bool
	closed   bool
	head     int     // no use before head is useWaiting
	packHead []int32 // per pack: no use before byPack[p][packHead[p]] is useWaiting
	spans    []*span
	fetching int
	// blocked: the span at head does not fit in the budget (need bytes).
	blocked   bool
	need      int64
	held      int64    // bytes of all span buffers, free ones included
	free      [][]byte // buffers kept for reuse
	freeBytes int64
	stats     PrefetchStats

	wg     sync.WaitGroup
	cancel context.CancelFunc
	stop   func() bool
}

// NewPrefetcher returns a Prefetcher with an empty plan.
func (r *Repo) NewPrefetcher(opt PrefetchOptions) *Prefetcher {
	opt.applyDefaults()
	p := &Prefetcher{r: r, opt: opt, packNo: map[ID]uint32{}, files: []int32{0}, cum: []int64{0}}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// AddFile appends a file's chunks to the plan and returns the file's
// number for Blob and Done. Call it before Start.
func (p *Prefetcher) AddFile(content []ID) int {
	for _, id := range content {
		u := use{id: id, state: useDirect, span: -1}
		loc, ok := p.r.idx.Lookup(id)
		// Anything LoadBlob would refuse is left to it, so that its error
		// is the one reported.
		if ok && loc.Type == DataBlob && checkBlobLengths(loc.Type, loc.Flags, loc.Length, loc.RawLen) == nil {
			no, ok := p.packNo[loc.Pack]
			if !ok {
				no = uint32(len(p.packs))
				p.packs = append(p.packs, loc.Pack)
				p.packNo[loc.Pack] = no
				p.byPack = append(p.byPack, nil)
			}
			u = use{id: id, pack: no, offset: loc.Offset, length: loc.Length, rawLen: loc.RawLen, flags: loc.Flags, state: useWaiting, span: -1}
			p.byPack[no] = append(p.byPack[no], int32(len(p.uses)))
		}
		p.uses = append(p.uses, u)
		n := int64(0)
		if u.state == useWaiting {
			n = int64(u.length)
		}
		p.cum = append(p.cum, p.cum[len(p.cum)-1]+n)
	}
	p.files = append(p.files, int32(len(p.uses)))
	return len(p.files) - 2
}

// Start begins reading spans ahead, until ctx ends or Close.
func (p *Prefetcher) Start(ctx context.Context) {
	ctx, p.cancel = context.WithCancel(ctx)
	p.mu.Lock()
	p.started = true
	p.packHead = make([]int32, len(p.packs))
	p.mu.Unlock()
	// Waiting consumers and the scheduler wake when ctx ends.
	p.stop = context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.closed = true
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.schedule(ctx)
	}()
}

// Close stops reading ahead, waits for the reads in flight and drops every
// buffer. Blob must not be called after Close.
func (p *Prefetcher) Close() {
	if p.cancel != nil {
		p.cancel()
		p.wg.Wait()
		p.stop()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, s := range p.spans {
		if s != nil && s.buf != nil {
			p.held -= int64(cap(s.buf))
			s.buf = nil
		}
	}
	p.held -= p.freeBytes
	p.free, p.freeBytes = nil, 0
	p.cond.Broadcast()
}

// Stats returns the counts so far.
func (p *Prefetcher) Stats() PrefetchStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// schedule forms spans in plan order and starts their reads while the
// budget and Reads allow. It runs in its own goroutine (Start).
func (p *Prefetcher) schedule(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for p.head < len(p.uses) && p.uses[p.head].state != useWaiting {
			p.head++
		}
		if p.closed || p.head == len(p.uses) {
			return
		}
		if p.fetching >= p.opt.Reads {
			p.cond.Wait()
			continue
		}
		s, members := p.form(p.head)
		buf := p.alloc(s.len())
		if buf == nil {
			// The budget is full: wait for consumers to release spans
			// (or to read the blob at the head alone).
			p.blocked, p.need = true, int64(s.len())
			p.cond.Broadcast()
			p.cond.Wait()
			continue
		}
		p.blocked = false
		sp := &span{pack: p.uses[p.head].pack, offset: s.offset, buf: buf[:s.len()], refs: len(members), state: spanFetching}
		no := int32(len(p.spans))
		p.spans = append(p.spans, sp)
		for _, i := range members {
			p.uses[i].state = useInSpan
			p.uses[i].span = no
		}
		p.fetching++
		p.stats.Spans++
		p.stats.SpanBytes += int64(s.len())
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			err := p.fetch(ctx, sp)
			p.mu.Lock()
			p.fetching--
			sp.state = spanReady
			if err != nil {
				// Its blobs are read alone (LoadBlob), which reports
				// what is wrong with each.
				sp.state = spanFailed
				p.stats.Failed++
			}
			if err != nil || sp.refs <= 0 {
				p.freeBuf(sp)
			}
			p.cond.Broadcast()
			p.mu.Unlock()
		}()
	}
}

// extent is a byte range of a pack.
type extent struct{ offset, end int64 }

func (e extent) len() int { return int(e.end - e.offset) }

// form picks the span that holds the use at head: the waiting uses of its
// pack within Window of the plan, sorted by offset, grown from the head's
// blob to the right then to the left across gaps up to MaxGap, up to
// MaxSpan. It returns the span and the positions of the uses it serves.
// p.mu is held.
func (p *Prefetcher) form(head int) (extent, []int32) {
	h := p.uses[head]
	limit := p.cum[head] + p.opt.Window
	list := p.byPack[h.pack]
	ph := p.packHead[h.pack]
	for int(ph) < len(list) && p.uses[list[ph]].state != useWaiting {
		ph++
	}
	p.packHead[h.pack] = ph
	var cand []int32
	for _, i := range list[ph:] {
		if p.cum[i] > limit && int(i) != head {
			break
		}
		if p.uses[i].state == useWaiting {
			cand = append(cand, i)
		}
	}
	blobs := make([]extent, 0, len(cand))
	for _, i := range cand {
		u := p.uses[i]
		blobs = append(blobs, extent{int64(u.offset), int64(u.offset) + int64(u.length)})
	}
	slices.SortFunc(blobs, func(a, b extent) int { return cmp.Compare(a.offset, b.offset) })
	blobs = slices.Compact(blobs)
	at, _ := slices.BinarySearchFunc(blobs, int64(h.offset), func(e extent, off int64) int { return cmp.Compare(e.offset, off) })
	s := blobs[at]
	for j := at + 1; j < len(blobs); j++ {
		b := blobs[j]
		if b.offset-s.end > p.opt.MaxGap || max(b.end, s.end)-s.offset > p.opt.MaxSpan {
			break
		}
		s.end = max(s.end, b.end)
	}
	for j := at - 1; j >= 0; j-- {
		b := blobs[j]
		if s.offset-b.end > p.opt.MaxGap || s.end-b.offset > p.opt.MaxSpan {
			break
		}
		s.offset = min(s.offset, b.offset)
	}
	members := cand[:0]
	for _, i := range cand {
		u := p.uses[i]
		if int64(u.offset) >= s.offset && int64(u.offset)+int64(u.length) <= s.end {
			members = append(members, i)
		}
	}
	return s, members
}

// alloc returns a buffer of at least n bytes within the budget, or nil
// when the budget is full. A span alone larger than the budget cannot
// exist (MaxSpan ≤ Budget). p.mu is held.
func (p *Prefetcher) alloc(n int) []byte {
	best := -1
	for i, b := range p.free {
		if cap(b) >= n && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := p.free[best]
		p.free = slices.Delete(p.free, best, best+1)
		p.freeBytes -= int64(cap(b))
		return b[:0]
	}
	// Round up, so that buffers fit later spans of other sizes.
	size := int64(n+(64<<10)-1) &^ (64<<10 - 1)
	size = min(size, max(p.opt.MaxSpan, int64(n)))
	for p.held+size > p.opt.Budget && len(p.free) > 0 {
		p.held -= int64(cap(p.free[0]))
		p.freeBytes -= int64(cap(p.free[0]))
		p.free = p.free[1:]
	}
	if p.held+size > p.opt.Budget {
		return nil
	}
	p.held += size
	p.stats.PeakBytes = max(p.stats.PeakBytes, p.held)
	return make([]byte, 0, size)
}

// release drops n uses of s; the last one frees its buffer. p.mu is held.
func (p *Prefetcher) release(s *span, n int) {
	s.refs -= n
	if s.refs <= 0 {
		p.freeBuf(s)
	}
}

// freeBuf returns a span's buffer to the free list, unless it is being
// read into. p.mu is held.
func (p *Prefetcher) freeBuf(s *span) {
	if s.buf == nil || s.state == spanFetching {
		return
	}
	if p.closed {
		p.held -= int64(cap(s.buf))
	} else {
		p.free = append(p.free, s.buf[:0])
		p.freeBytes += int64(cap(s.buf))
	}
	s.buf = nil
	p.cond.Broadcast()
}

// fetch reads a span's bytes. Nothing is verified here: each blob is when
// it is taken.
func (p *Prefetcher) fetch(ctx context.Context, s *span) error {
	h := backend.Handle{Type: backend.PackFile, Name: p.packs[s.pack].String()}
	return p.r.be.Load(ctx, h, len(s.buf), s.offset, func(rd io.Reader) error {
		_, err := io.ReadFull(rd, s.buf)
		return err
	})
}

// Blob returns the plaintext of chunk i of file (its id, as planned),
// appended to buf[:0]: from its span when the span was read and the blob
// verifies, otherwise read alone through LoadBlob. Errors are LoadBlob's.
func (p *Prefetcher) Blob(ctx context.Context, file, i int, id ID, buf []byte) ([]byte, error) {
	pos := -1
	if file >= 0 && file+1 < len(p.files) && i >= 0 && int(p.files[file])+i < int(p.files[file+1]) {
		pos = int(p.files[file]) + i
	}
	if pos < 0 || p.uses[pos].id != id {
		return p.alone(ctx, id, buf)
	}
	p.mu.Lock()
	u := &p.uses[pos]
	for {
		if err := ctx.Err(); err != nil {
			p.mu.Unlock()
			return nil, err
		}
		switch u.state {
		case useDone, useDirect:
			p.mu.Unlock()
			return p.alone(ctx, id, buf)
		case useWaiting:
			// Not in a span yet. If none can come (budget full, nothing
			// in flight to complete), read it alone: the spans held wait
			// for other consumers.
			if p.closed || p.fetching == 0 && p.blocked && p.held-p.freeBytes+p.need > p.opt.Budget {
				u.state = useDone
				p.cond.Broadcast()
				p.mu.Unlock()
				return p.alone(ctx, id, buf)
			}
			p.cond.Wait()
			continue
		}
		s := p.spans[u.span]
		switch s.state {
		case spanFetching:
			p.cond.Wait()
			continue
		case spanFailed:
			u.state = useDone
			p.release(s, 1)
			p.mu.Unlock()
			return p.alone(ctx, id, buf)
		}
		// Ready: open the blob from the span outside the lock; the span
		// stays held until this use is released.
		u.state = useDone
		sealed := s.buf[int64(u.offset)-s.offset : int64(u.offset)-s.offset+int64(u.length)]
		pack := p.packs[u.pack]
		p.mu.Unlock()
		plain, err := p.r.OpenBlob(DataBlob, id, pack, u.flags, u.rawLen, sealed, buf)
		p.mu.Lock()
		p.release(s, 1)
		p.mu.Unlock()
		if err != nil {
			// Bad bytes in the span (at rest or on the way): read the blob
			// again alone; LoadBlob's error is the one reported.
			return p.alone(ctx, id, buf)
		}
		return plain, nil
	}
}

func (p *Prefetcher) alone(ctx context.Context, id ID, buf []byte) ([]byte, error) {
	p.mu.Lock()
	p.stats.Alone++
	p.mu.Unlock()
	return p.r.LoadBlob(ctx, DataBlob, id, buf)
}

// Done drops the untaken chunks of file (finished, failed or skipped), so
// that the spans holding them are freed.
func (p *Prefetcher) Done(file int) {
	if file < 0 || file+1 >= len(p.files) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for pos := p.files[file]; pos < p.files[file+1]; pos++ {
		u := &p.uses[pos]
		switch u.state {
		case useWaiting:
			u.state = useDone
		case useInSpan:
			u.state = useDone
			p.release(p.spans[u.span], 1)
		}
	}
	p.cond.Broadcast()
}
