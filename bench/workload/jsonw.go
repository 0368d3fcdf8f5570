package workload

import "strconv"

// jsonw is a tiny append-only pretty JSON writer (2-space indentation, like
// Envoy's admin output). Callers only pass strings that need no escaping.
type jsonw struct {
	b     []byte
	count []int // number of members written in each open container
}

func (w *jsonw) sep() {
	if n := len(w.count); n > 0 {
		if w.count[n-1] > 0 {
			w.b = append(w.b, ',')
		}
		w.count[n-1]++
		w.b = append(w.b, '\n')
		for i := 0; i < n; i++ {
			w.b = append(w.b, ' ', ' ')
		}
	}
}

// k starts an object member; the value must follow.
func (w *jsonw) k(key string) *jsonw {
	w.sep()
	w.b = append(w.b, '"')
	w.b = append(w.b, key...)
	w.b = append(w.b, '"', ':', ' ')
	return w
}

// e starts an array element; the value must follow.
func (w *jsonw) e() *jsonw { w.sep(); return w }

func (w *jsonw) obj() *jsonw { w.b = append(w.b, '{'); w.count = append(w.count, 0); return w }
func (w *jsonw) arr() *jsonw { w.b = append(w.b, '['); w.count = append(w.count, 0); return w }

func (w *jsonw) end(c byte) {
	n := len(w.count)
	if w.count[n-1] > 0 {
		w.b = append(w.b, '\n')
		for i := 0; i < n-1; i++ {
			w.b = append(w.b, ' ', ' ')
		}
	}
	w.count = w.count[:n-1]
	w.b = append(w.b, c)
}

func (w *jsonw) endObj() { w.end('}') }
func (w *jsonw) endArr() { w.end(']') }

func (w *jsonw) str(s string) {
	w.b = append(w.b, '"')
	w.b = append(w.b, s...)
	w.b = append(w.b, '"')
}
func (w *jsonw) strs(parts ...string) {
	w.b = append(w.b, '"')
	for _, p := range parts {
		w.b = append(w.b, p...)
	}
	w.b = append(w.b, '"')
}
func (w *jsonw) num(n int64)    { w.b = strconv.AppendInt(w.b, n, 10) }
func (w *jsonw) boolean(v bool) { w.b = strconv.AppendBool(w.b, v) }
func (w *jsonw) raw(s string)   { w.b = append(w.b, s...) }

func (w *jsonw) kv(key, val string)          { w.k(key).str(val) }
func (w *jsonw) kn(key string, n int64)      { w.k(key).num(n) }
func (w *jsonw) kb(key string, v bool)       { w.k(key).boolean(v) }
func (w *jsonw) kvs(key string, p ...string) { w.k(key).strs(p...) }
func (w *jsonw) kraw(key string, v string)   { w.k(key).raw(v) }
func (w *jsonw) size() int                   { return len(w.b) }
