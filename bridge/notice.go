package bridge

import (
	"encoding/json"
	"time"

	"github.com/sealrelay/sealrelay/protocol"
)

// dropReasonOther is the metric label of reasons this bridge does not know.
const dropReasonOther = "other"

// dropReasonLabel maps a drop reason from the broker to a metric label:
// the known reasons, or "other" (labels must not grow without bound).
func dropReasonLabel(reason protocol.DropReason) string {
	if reason.Known() {
		return string(reason)
	}
	return dropReasonOther
}

// dropNotice records an events_dropped notice from the broker: totals on
// /health and in sealrelay_bridge_broker_dropped_events_total, a warning
// with the counts, time range and reasons (event ids at debug level; never
// any text). A notice whose payload does not pass protocol.ParseDropNotice
// is only logged; either way the message is acked like any system notice.
func (b *Bridge) dropNotice(messageID string, payload json.RawMessage) {
	n, err := protocol.ParseDropNotice(payload)
	if err != nil {
		b.log.Warn("broker notice events_dropped with a malformed payload", "message_id", truncate(messageID, 64), "err", err)
		return
	}
	reasons := map[string]uint64{}
	var counted uint64
	for r, c := range n.Reasons {
		if c <= 0 {
			continue
		}
		reasons[dropReasonLabel(r)] += uint64(c)
		counted += uint64(c)
	}
	// Keep the total and the reasons consistent: the larger of the count
	// and the sum of the reasons, the difference under "other".
	total := max(uint64(n.Count), counted)
	if total > counted {
		reasons[dropReasonOther] += total - counted
	}
	b.mu.Lock()
	b.health.BrokerDropped += total
	if b.health.BrokerDropReasons == nil {
		b.health.BrokerDropReasons = map[string]uint64{}
	}
	for r, c := range reasons {
		b.health.BrokerDropReasons[r] += c
	}
	b.mu.Unlock()
	for r, c := range reasons {
		b.metrics.brokerDropped.WithLabelValues(r).Add(float64(c))
	}
	attrs := []any{"count", n.Count, "reasons", reasons,
		"first_dropped_at", time.Unix(n.FirstDroppedAt, 0).UTC().Format(time.RFC3339),
		"last_dropped_at", time.Unix(n.LastDroppedAt, 0).UTC().Format(time.RFC3339),
		"event_ids_listed", len(n.EventIDs), "event_ids_truncated", n.EventIDsTruncated}
	b.log.Warn("broker dropped events meant for this agent (they will not arrive)", attrs...)
	ids := make([]string, 0, len(n.EventIDs))
	for _, id := range n.EventIDs {
		ids = append(ids, truncate(id, maxEventIDLen))
	}
	b.log.Debug("dropped Slack event ids", "event_ids", ids)
}
