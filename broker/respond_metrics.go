package broker

import "github.com/prometheus/client_golang/prometheus"

// respondMetrics count held Slack requests and agents' responds (§8.2).
type respondMetrics struct {
	held        prometheus.Counter
	answered    prometheus.Counter
	expired     prometheus.Counter
	late        prometheus.Counter
	responds    *prometheus.CounterVec   // outcome
	holdSeconds *prometheus.HistogramVec // outcome: answered, expired
}

func newRespondMetrics(reg prometheus.Registerer) (*respondMetrics, error) {
	m := &respondMetrics{
		held: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealrelay_broker_held_requests_total",
			Help: "Slack requests held for an agent's inbox.respond."}),
		answered: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealrelay_broker_held_answered_total",
			Help: "Held Slack requests answered with an agent's respond before the deadline."}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealrelay_broker_held_expired_total",
			Help: "Held Slack requests answered empty because no respond came before the deadline."}),
		late: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealrelay_broker_respond_late_total",
			Help: "inbox.respond requests that came after their held request's deadline."}),
		responds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_responds_total",
			Help: "inbox.respond requests, by outcome."}, []string{"outcome"}),
		holdSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sealrelay_broker_hold_duration_seconds",
			Help:    "Time from a held Slack request's arrival to its answer, by outcome (answered, expired).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 1.5, 2, 2.5, 3}}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{m.held, m.answered, m.expired, m.late, m.responds, m.holdSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
