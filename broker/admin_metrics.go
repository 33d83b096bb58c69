package broker

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DeadLetterRefresh is how old the dead-letter counts reported by
// Admin.DeadLetterCollector may get before a scrape reads them again from
// the store.
const DeadLetterRefresh = time.Minute

// deadLetterGauge reports sealrelay_broker_inbox_dead_letters{agent} for
// every registered agent whose inbox holds dead letters, across the whole
// store (not only the inboxes this process served). Agents without dead
// letters get no series, which keeps the cardinality at the number of
// inboxes with a problem.
type deadLetterGauge struct {
	a    *Admin
	desc *prometheus.Desc

	mu      sync.Mutex
	counts  map[string]int // agent id → dead letters
	fetched time.Time      // last full read
}

func newDeadLetterGauge(a *Admin) *deadLetterGauge {
	return &deadLetterGauge{
		a: a,
		desc: prometheus.NewDesc("sealrelay_broker_inbox_dead_letters",
			"Dead-lettered messages per agent inbox, for every registered agent with at least one (refreshed at most once a minute, and by admin calls).",
			[]string{"agent"}, nil),
		counts: map[string]int{},
	}
}

func (g *deadLetterGauge) set(agent string, n int) {
	g.mu.Lock()
	if n > 0 {
		g.counts[agent] = n
	} else {
		delete(g.counts, agent)
	}
	g.mu.Unlock()
}

func (g *deadLetterGauge) forget(agent string) { g.set(agent, 0) }

// refresh reads every agent's dead-letter count when the last full read is
// older than DeadLetterRefresh.
func (g *deadLetterGauge) refresh(ctx context.Context) {
	now := g.a.opts.Now()
	g.mu.Lock()
	stale := g.fetched.IsZero() || now.Sub(g.fetched) >= DeadLetterRefresh
	g.mu.Unlock()
	if !stale {
		return
	}
	agents, err := g.a.as.ListAllAgents(ctx)
	if err != nil {
		return
	}
	counts := make(map[string]int)
	for _, ag := range agents {
		st, err := g.a.q.Stats(ctx, ag.ID)
		if err != nil {
			return // keep the old counts rather than report a partial set
		}
		if st.DeadLetters > 0 {
			counts[ag.ID] = st.DeadLetters
		}
	}
	g.mu.Lock()
	g.counts, g.fetched = counts, now
	g.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (g *deadLetterGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector.
func (g *deadLetterGauge) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.refresh(ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	for agent, n := range g.counts {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(n), agent)
	}
}

// DeadLetterCollector returns the collector of
// sealrelay_broker_inbox_dead_letters; register it once.
func (a *Admin) DeadLetterCollector() prometheus.Collector { return a.dl }
