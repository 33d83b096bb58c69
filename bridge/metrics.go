package bridge

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the bridge's Prometheus series, in a registry of its own so
// that several bridges can live in one process.
type metrics struct {
	reg             *prometheus.Registry
	received        prometheus.Counter
	delivered       prometheus.Counter
	duplicates      prometheus.Counter
	poison          *prometheus.CounterVec
	acked           prometheus.Counter
	pullErrors      prometheus.Counter
	ackErrors       prometheus.Counter
	deliveryErrors  prometheus.Counter
	outbound        *prometheus.CounterVec
	streamDropped   prometheus.Counter
	brokerDropped   *prometheus.CounterVec
	streamConsumers prometheus.Gauge
	failures        prometheus.Gauge
	lastPoll        prometheus.Gauge
	webapiCalls     *prometheus.CounterVec
	// Socket Mode, synchronous answers and forward (socketmode.go,
	// respond.go, forward.go).
	socketConns        prometheus.Gauge
	socketRedeliveries prometheus.Counter
	responds           *prometheus.CounterVec
	forwardNoRetry     prometheus.Counter
}

func newMetrics() *metrics {
	const ns = "sealrelay_bridge"
	m := &metrics{
		reg:             prometheus.NewRegistry(),
		received:        prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "messages_received_total", Help: "Inbox messages received from the broker."}),
		delivered:       prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "messages_delivered_total", Help: "Messages delivered locally."}),
		duplicates:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "messages_duplicate_total", Help: "Redelivered messages suppressed by the dedup store."}),
		poison:          prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "messages_poison_total", Help: "Messages acked without delivery because they can never be processed."}, []string{"reason"}),
		acked:           prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "messages_acked_total", Help: "Message ids acked at the broker."}),
		pullErrors:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "pull_errors_total", Help: "Failed inbox pulls."}),
		ackErrors:       prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "ack_errors_total", Help: "Failed inbox acks."}),
		deliveryErrors:  prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "delivery_errors_total", Help: "Failed local deliveries (retried later)."}),
		outbound:        prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "outbound_requests_total", Help: "Local API calls relayed to the broker, by action and HTTP status."}, []string{"action", "status"}),
		streamDropped:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "stream_dropped_total", Help: "Events an SSE consumer missed: it resumed after an id whose successors had already left the buffer."}),
		brokerDropped:   prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "broker_dropped_events_total", Help: "Event copies the broker reported dropped for this agent (events_dropped notices), by reason."}, []string{"reason"}),
		streamConsumers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "stream_consumers", Help: "Connected SSE consumers."}),
		failures:        prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "consecutive_failures", Help: "Consecutive failed poll cycles."}),
		lastPoll:        prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "last_poll_timestamp_seconds", Help: "Unix time of the last successful pull."}),
		webapiCalls:     prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webapi_calls_total", Help: "Slack Web API calls of the local app, by method family (chat, conversations, …; other) and outcome."}, []string{"class", "outcome"}),
	}
	m.socketConns = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "socket_mode_connections", Help: "Connected Socket Mode clients."})
	m.socketRedeliveries = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "socket_mode_redeliveries_total", Help: "Socket Mode envelopes sent again because no ack came within 3 s or the connection ended."})
	m.responds = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "responds_total", Help: "Synchronous answers sent to the broker (POST /api/inbox/respond), by outcome (delivered, not_delivered, late, error)."}, []string{"outcome"})
	m.forwardNoRetry = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "forward_no_retry_total", Help: "Forwarded events the local app refused with X-Slack-No-Retry: 1 (acked, not retried)."})
	m.reg.MustRegister(m.socketConns, m.socketRedeliveries, m.responds, m.forwardNoRetry)
	m.reg.MustRegister(m.received, m.delivered, m.duplicates, m.poison, m.acked, m.pullErrors, m.ackErrors,
		m.deliveryErrors, m.outbound, m.streamDropped, m.brokerDropped, m.streamConsumers, m.failures, m.lastPoll, m.webapiCalls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// MetricsHandler serves the bridge's Prometheus metrics.
func (b *Bridge) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(b.metrics.reg, promhttp.HandlerOpts{})
}
