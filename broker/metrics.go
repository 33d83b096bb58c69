package broker

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealrelay/sealrelay/queue"
)

// metrics are the broker's Prometheus metrics, all named sealrelay_broker_*.
type metrics struct {
	eventsReceived *prometheus.CounterVec // endpoint
	eventsQueued   prometheus.Counter     // copies stored (one per agent)
	eventsDropped  *prometheus.CounterVec // reason
	pulls          *prometheus.CounterVec // outcome
	pulledMessages prometheus.Counter
	acks           *prometheus.CounterVec // outcome
	ackedMessages  prometheus.Counter
	sends          *prometheus.CounterVec // action, outcome
	slackErrors    *prometheus.CounterVec // method, code
	registrations  *prometheus.CounterVec // outcome
	installs       *prometheus.CounterVec // outcome
	longPolls      prometheus.Gauge
	latency        *prometheus.HistogramVec // route, code
	dropNotices    prometheus.Counter
	storeTimeouts  *prometheus.CounterVec // route
	// pullSigCacheHits counts pulls whose signature check was answered by
	// the pull signature cache (agentapi.go).
	pullSigCacheHits prometheus.Counter

	// Children of the vectors counted on every event, pull or ack.
	received *childCache[string, prometheus.Counter] // eventsReceived
	pullsBy  *childCache[string, prometheus.Counter] // pulls
	acksBy   *childCache[string, prometheus.Counter] // acks
}

func newMetrics(reg prometheus.Registerer, depth *depthCollector) (*metrics, error) {
	m := &metrics{
		eventsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_events_received_total",
			Help: "Slack requests with a valid signature, by endpoint."}, []string{"endpoint"}),
		eventsQueued: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealrelay_broker_events_queued_total",
			Help: "Sealed event copies stored in agent inboxes (one per agent)."}),
		eventsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_events_dropped_total",
			Help: "Events or event copies not queued, by reason."}, []string{"reason"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_pulls_total",
			Help: "inbox.pull requests, by outcome."}, []string{"outcome"}),
		pulledMessages: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealrelay_broker_pulled_messages_total",
			Help: "Messages handed out by inbox.pull."}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_acks_total",
			Help: "inbox.ack requests, by outcome."}, []string{"outcome"}),
		ackedMessages: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealrelay_broker_acked_messages_total",
			Help: "Messages removed by inbox.ack."}),
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_sends_total",
			Help: "send requests, by action and outcome."}, []string{"action", "outcome"}),
		slackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_slack_api_errors_total",
			Help: "Slack Web API errors, by method and error code."}, []string{"method", "code"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_registrations_total",
			Help: "Agent registrations, by outcome."}, []string{"outcome"}),
		installs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_installs_total",
			Help: "Slack OAuth installs, by outcome."}, []string{"outcome"}),
		longPolls: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sealrelay_broker_long_polls_active",
			Help: "Pulls currently waiting for messages in this process."}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sealrelay_broker_request_duration_seconds",
			Help:    "HTTP request latency, by route and status code.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"route", "code"}),
		dropNotices: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealrelay_broker_drop_notices_total",
			Help: "events_dropped notices queued to agents (each covers one or more dropped copies)."}),
		storeTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_store_timeouts_total",
			Help: "Requests answered 503 because the state or inbox store did not answer within the deadline, by route."}, []string{"route"}),
		pullSigCacheHits: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealrelay_broker_pull_signature_cache_hits_total",
			Help: "inbox.pull requests whose Ed25519 check was skipped because this process had verified the same signed bytes and signature under the same agent key."}),
	}
	m.received, m.pullsBy, m.acksBy = counterCache(m.eventsReceived), counterCache(m.pulls), counterCache(m.acks)
	for _, c := range []prometheus.Collector{m.eventsReceived, m.eventsQueued, m.eventsDropped, m.pulls,
		m.pulledMessages, m.acks, m.ackedMessages, m.sends, m.slackErrors, m.registrations, m.installs,
		m.longPolls, m.latency, m.dropNotices, m.storeTimeouts, m.pullSigCacheHits, depth} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// depthCollector reports sealrelay_broker_queue_depth for the inboxes this
// process has served, reading queue.Store.Stats at scrape time.
type depthCollector struct {
	q    queue.Store
	desc *prometheus.Desc
	dead *prometheus.Desc

	mu      sync.Mutex
	inboxes map[string]string // agent id → org id
}

func newDepthCollector(q queue.Store) *depthCollector {
	return &depthCollector{
		q: q,
		desc: prometheus.NewDesc("sealrelay_broker_queue_depth",
			"Unacknowledged messages (ready plus leased) per agent inbox served by this process.", []string{"org_id", "agent_id"}, nil),
		dead: prometheus.NewDesc("sealrelay_broker_queue_dead_letters",
			"Dead-lettered messages per agent inbox served by this process.", []string{"org_id", "agent_id"}, nil),
		inboxes: map[string]string{},
	}
}

func (d *depthCollector) track(agentID, orgID string) {
	d.mu.Lock()
	d.inboxes[agentID] = orgID
	d.mu.Unlock()
}

func (d *depthCollector) forget(agentID string) {
	d.mu.Lock()
	delete(d.inboxes, agentID)
	d.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (d *depthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- d.desc
	ch <- d.dead
}

// Collect implements prometheus.Collector.
func (d *depthCollector) Collect(ch chan<- prometheus.Metric) {
	d.mu.Lock()
	in := make(map[string]string, len(d.inboxes))
	for k, v := range d.inboxes {
		in[k] = v
	}
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for agent, org := range in {
		st, err := d.q.Stats(ctx, agent)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, float64(st.Depth()), org, agent)
		ch <- prometheus.MustNewConstMetric(d.dead, prometheus.GaugeValue, float64(st.DeadLetters), org, agent)
	}
}

// childCache remembers the children of a metric vector by label key, so a
// per-request path pays a read-locked map lookup instead of the hashing and
// locking of WithLabelValues. A child is made on first use, as
// WithLabelValues would make it: no series appears before it is counted.
type childCache[K comparable, T any] struct {
	mu   sync.RWMutex
	m    map[K]T
	make func(K) T
}

func newChildCache[K comparable, T any](make func(K) T) *childCache[K, T] {
	return &childCache[K, T]{m: map[K]T{}, make: make}
}

// with returns the child for k.
func (c *childCache[K, T]) with(k K) T {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok = c.m[k]; !ok {
		v = c.make(k)
		c.m[k] = v
	}
	return v
}

// counterCache returns a childCache over vec's children by one label value.
func counterCache(vec *prometheus.CounterVec) *childCache[string, prometheus.Counter] {
	return newChildCache(func(v string) prometheus.Counter { return vec.WithLabelValues(v) })
}
