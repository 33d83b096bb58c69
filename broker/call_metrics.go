package broker

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// callMetrics are the /api/call metrics. Labels never carry arguments or
// response content; the method label is bounded (see methodLabel).
type callMetrics struct {
	calls    *prometheus.CounterVec   // method, outcome
	duration *prometheus.HistogramVec // method
}

func newCallMetrics(reg prometheus.Registerer) (*callMetrics, error) {
	m := &callMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_calls_total",
			Help: "api.call requests, by Slack method and outcome."}, []string{"method", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sealrelay_broker_call_slack_duration_seconds",
			Help:    "Latency of the Slack Web API request made for an api.call, by method.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"method"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// labelledMethods are the method names used as metric labels; any other
// name (agents choose it) is counted as "other" to bound cardinality.
var labelledMethods = func() map[string]bool {
	m := map[string]bool{}
	for _, name := range DefaultCallMethods {
		if !strings.HasSuffix(name, ".") {
			m[name] = true
		}
	}
	for _, name := range []string{
		"chat.postMessage", "chat.postEphemeral", "chat.update", "chat.delete", "chat.startStream",
		"chat.appendStream", "chat.stopStream", "chat.scheduleMessage", "chat.getPermalink", "chat.unfurl",
		"reactions.add", "reactions.remove", "reactions.get", "reactions.list",
		"pins.add", "pins.remove", "pins.list", "views.open", "views.update", "views.push", "views.publish",
		"assistant.threads.setStatus", "assistant.threads.setSuggestedPrompts", "assistant.threads.setTitle",
	} {
		m[name] = true
	}
	return m
}()

func methodLabel(method string) string {
	if labelledMethods[method] {
		return method
	}
	return "other"
}
