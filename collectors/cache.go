package collectors

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshbackup/backupd/backupd/results"
)

// The run metrics are served from a cache of encoded series, not gathered
// from their vectors at each scrape (docs/DESIGN.md §4, "Scrape cost").
//
// The vectors (client_golang's CounterVec, GaugeVec and HistogramVec) hold
// the values, exemplars and native histograms as before, and Register still
// registers them, so a plain registry gathers what it always did. But every
// change goes through the wrappers below, which write the changed child
// into a dto.Metric of its own at once: a scrape then only assembles the
// families from those, a slice copy per family, instead of the registry
// collecting, writing, hashing and sorting every one of 50,000 series of
// 1,000 policies. Published dto.Metrics are never modified (a change makes
// a new one), so scrapes share them without copying.

// seriesCache holds the encoded series of every run metric family.
type seriesCache struct {
	mu   sync.Mutex
	fams []*cachedFamily // sorted by name
}

type cachedFamily struct {
	name, help string
	typ        dto.MetricType
	labels     []string                 // label names, in the vector's order
	series     map[string]*cachedSeries // by label values joined with \xff
	sorted     []*dto.Metric            // in exposition order; nil when series were added or removed
}

type cachedSeries struct {
	values []string
	m      *dto.Metric
	idx    int // in sorted
}

func (c *seriesCache) family(name, help string, typ dto.MetricType, labels []string) *cachedFamily {
	f := &cachedFamily{name: ns + "_" + name, help: help, typ: typ, labels: labels, series: map[string]*cachedSeries{}}
	i, _ := slices.BinarySearchFunc(c.fams, f.name, func(x *cachedFamily, n string) int { return strings.Compare(x.name, n) })
	c.fams = slices.Insert(c.fams, i, f)
	return f
}

// put writes the current state of m, the child of f with these label
// values, into the cache. c.mu is held.
func (f *cachedFamily) put(values []string, m prometheus.Metric) {
	out := &dto.Metric{}
	if err := m.Write(out); err != nil {
		panic(fmt.Sprintf("collectors: write %s: %v", f.name, err)) // the client's own metrics do not fail
	}
	key := strings.Join(values, "\xff")
	if s, ok := f.series[key]; ok {
		s.m = out
		if f.sorted != nil {
			f.sorted[s.idx] = out
		}
		return
	}
	f.series[key] = &cachedSeries{values: slices.Clone(values), m: out}
	f.sorted = nil
}

// deleteMatching drops the series whose label name has value. c.mu is held.
func (f *cachedFamily) deleteMatching(name, value string) {
	i := slices.Index(f.labels, name)
	if i < 0 {
		return
	}
	for k, s := range f.series {
		if s.values[i] == value {
			delete(f.series, k)
			f.sorted = nil
		}
	}
}

// lessMetric orders series as the registry does: by the values of their
// labels, taken in the order of the label names.
func lessMetric(a, b *dto.Metric) int {
	for i, lp := range a.Label {
		if c := strings.Compare(lp.GetValue(), b.Label[i].GetValue()); c != 0 {
			return c
		}
	}
	return 0
}

// gather returns the families with at least one series, sorted by name,
// their series sorted by label values, as a registry's Gather does.
func (c *seriesCache) gather() []*dto.MetricFamily {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*dto.MetricFamily, 0, len(c.fams))
	for _, f := range c.fams {
		if len(f.series) == 0 {
			continue
		}
		if f.sorted == nil {
			ss := make([]*cachedSeries, 0, len(f.series))
			for _, s := range f.series {
				ss = append(ss, s)
			}
			slices.SortFunc(ss, func(a, b *cachedSeries) int { return lessMetric(a.m, b.m) })
			f.sorted = make([]*dto.Metric, len(ss))
			for i, s := range ss {
				s.idx = i
				f.sorted[i] = s.m
			}
		}
		typ := f.typ
		out = append(out, &dto.MetricFamily{Name: &f.name, Help: &f.help, Type: &typ, Metric: slices.Clone(f.sorted)})
	}
	return out
}

// counterVec is a CounterVec whose changes are cached.
type counterVec struct {
	*prometheus.CounterVec
	f *cachedFamily
	c *seriesCache
}

// touch creates the series at 0 if it does not exist.
func (v counterVec) touch(values ...string) { v.add(0, values...) }

func (v counterVec) add(x float64, values ...string) {
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	ch := v.WithLabelValues(values...)
	ch.Add(x)
	v.f.put(values, ch)
}

// addEx adds x with the run's id as the exemplar.
func (v counterVec) addEx(x float64, r results.Record, values ...string) {
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	ch := v.WithLabelValues(values...)
	if ea, ok := ch.(prometheus.ExemplarAdder); ok {
		ea.AddWithExemplar(x, exemplar(r))
	} else {
		ch.Add(x)
	}
	v.f.put(values, ch)
}

// gaugeVec is a GaugeVec whose changes are cached.
type gaugeVec struct {
	*prometheus.GaugeVec
	f *cachedFamily
	c *seriesCache
}

func (v gaugeVec) touch(values ...string) { v.update(func(prometheus.Gauge) {}, values...) }

func (v gaugeVec) set(x float64, values ...string) {
	v.update(func(g prometheus.Gauge) { g.Set(x) }, values...)
}

func (v gaugeVec) inc(values ...string) { v.update(prometheus.Gauge.Inc, values...) }

// remove deletes the series with these label values, if there is one.
func (v gaugeVec) remove(values ...string) {
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	v.DeleteLabelValues(values...)
	key := strings.Join(values, "\xff")
	if _, ok := v.f.series[key]; ok {
		delete(v.f.series, key)
		v.f.sorted = nil
	}
}

func (v gaugeVec) update(fn func(prometheus.Gauge), values ...string) {
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	g := v.WithLabelValues(values...)
	fn(g)
	v.f.put(values, g)
}

// histogramVec is a HistogramVec whose changes are cached.
type histogramVec struct {
	*prometheus.HistogramVec
	f *cachedFamily
	c *seriesCache
}

func (v histogramVec) touch(values ...string) {
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	v.f.put(values, v.WithLabelValues(values...).(prometheus.Metric))
}

// observe observes x with the run's id as the exemplar.
func (v histogramVec) observe(x float64, r results.Record, values ...string) {
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	o := v.WithLabelValues(values...)
	if eo, ok := o.(prometheus.ExemplarObserver); ok {
		eo.ObserveWithExemplar(x, exemplar(r))
	} else {
		o.Observe(x)
	}
	v.f.put(values, o.(prometheus.Metric))
}

// deleter is what deletePolicy needs of a vector.
type deleter interface {
	DeletePartialMatch(prometheus.Labels) int
}
