package main

import (
	"math"
	"slices"
	"sync"
	"time"
)

// postStatus is where a posted event stands.
type postStatus uint8

const (
	postPending  postStatus = iota // sent, no answer yet
	postAccepted                   // the broker answered 200: it must reach every consumer
	postRejected                   // an error or another status: Slack would retry
)

// sentEvent is one event the harness posted.
type sentEvent struct {
	channel int
	seq     int
	sent    time.Time
	status  postStatus
	// firsts counts the consumers that have received it at least once.
	firsts int
}

// consumerState is one consumer's (bridge's) accounting.
type consumerState struct {
	got        map[string]int // deliveries per event id
	lastSeq    map[int]int    // highest sequence number delivered, per channel
	delivered  int            // first deliveries of this run's events
	duplicates int            // deliveries beyond the first
	outOfOrder int            // first deliveries older than one already delivered on their channel
}

// tracker does the loss, duplicate and order accounting of one run and
// collects the latencies. It is safe for concurrent use.
type tracker struct {
	mu        sync.Mutex
	events    map[string]*sentEvent
	consumers []consumerState

	accepted, rejected int
	foreign            int // deliveries of events this run did not post
	dropped            int // events an SSE stream said it dropped
	answer             []time.Duration
	e2e                []time.Duration
	lastDelivery       time.Time

	// outstanding counts (accepted event, consumer) pairs not yet delivered.
	outstanding int
	// unanswered counts posts without an answer yet.
	unanswered  int
	postingDone bool
	settled     chan struct{} // closed once posting is done and nothing is outstanding
}

func newTracker(consumers int) *tracker {
	t := &tracker{events: map[string]*sentEvent{}, consumers: make([]consumerState, consumers), settled: make(chan struct{})}
	for i := range t.consumers {
		t.consumers[i] = consumerState{got: map[string]int{}, lastSeq: map[int]int{}}
	}
	return t
}

// sent records an event about to be posted.
func (t *tracker) sent(id string, channel, seq int, at time.Time) {
	t.mu.Lock()
	t.events[id] = &sentEvent{channel: channel, seq: seq, sent: at}
	t.unanswered++
	t.mu.Unlock()
}

// answered records the broker's answer to the post of id and how long it
// took; ok means 200.
func (t *tracker) answered(id string, ok bool, took time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ev := t.events[id]
	if ev == nil || ev.status != postPending {
		return
	}
	t.answer = append(t.answer, took)
	t.unanswered--
	defer t.checkSettled()
	if !ok {
		ev.status = postRejected
		t.rejected++
		return
	}
	ev.status = postAccepted
	t.accepted++
	t.outstanding += len(t.consumers) - ev.firsts
}

// delivered records that consumer c received event id at time at.
func (t *tracker) delivered(c int, id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ev := t.events[id]
	if ev == nil || c < 0 || c >= len(t.consumers) {
		t.foreign++
		return
	}
	cs := &t.consumers[c]
	cs.got[id]++
	if cs.got[id] > 1 {
		cs.duplicates++
		return
	}
	cs.delivered++
	ev.firsts++
	if ev.status == postAccepted {
		t.outstanding--
	}
	if last, ok := cs.lastSeq[ev.channel]; ok && ev.seq < last {
		cs.outOfOrder++
	} else {
		cs.lastSeq[ev.channel] = ev.seq
	}
	t.e2e = append(t.e2e, at.Sub(ev.sent))
	if at.After(t.lastDelivery) {
		t.lastDelivery = at
	}
	t.checkSettled()
}

// streamDropped records an SSE "dropped" notice of n events.
func (t *tracker) streamDropped(n int) {
	t.mu.Lock()
	t.dropped += n
	t.mu.Unlock()
}

// donePosting says no more events will be sent; settled closes once every
// accepted event has reached every consumer.
func (t *tracker) donePosting() {
	t.mu.Lock()
	t.postingDone = true
	t.checkSettled()
	t.mu.Unlock()
}

func (t *tracker) checkSettled() {
	if !t.postingDone || t.outstanding > 0 || t.unanswered > 0 {
		return
	}
	select {
	case <-t.settled:
	default:
		close(t.settled)
	}
}

// counts is the accounting at one moment.
type counts struct {
	Posted, Accepted, Rejected   int
	Delivered, Lost, Duplicated  int
	OutOfOrder, Foreign, Dropped int
	// PerConsumer lists the same per consumer (only the delivery fields).
	PerConsumer []consumerCounts
}

// consumerCounts is one consumer's share of counts.
type consumerCounts struct {
	Delivered  int `json:"delivered"`
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	OutOfOrder int `json:"out_of_order"`
}

// counts returns the accounting now: an accepted event a consumer has not
// received is lost for that consumer.
func (t *tracker) counts() counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := counts{Posted: len(t.events), Accepted: t.accepted, Rejected: t.rejected, Foreign: t.foreign, Dropped: t.dropped}
	for i := range t.consumers {
		cs := &t.consumers[i]
		cc := consumerCounts{Delivered: cs.delivered, Duplicated: cs.duplicates, OutOfOrder: cs.outOfOrder}
		for id, ev := range t.events {
			if ev.status == postAccepted && cs.got[id] == 0 {
				cc.Lost++
			}
		}
		c.Delivered += cc.Delivered
		c.Lost += cc.Lost
		c.Duplicated += cc.Duplicated
		c.OutOfOrder += cc.OutOfOrder
		c.PerConsumer = append(c.PerConsumer, cc)
	}
	return c
}

// latencies returns copies of the webhook-answer and end-to-end samples
// and the time of the last delivery.
func (t *tracker) latencies() (answer, e2e []time.Duration, last time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.answer), slices.Clone(t.e2e), t.lastDelivery
}

// latencyStats summarises samples.
type latencyStats struct {
	N     int     `json:"n"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// summarize sorts samples (in place) and returns their p50, p99 and max.
func summarize(samples []time.Duration) latencyStats {
	if len(samples) == 0 {
		return latencyStats{}
	}
	slices.Sort(samples)
	return latencyStats{N: len(samples), P50ms: millis(percentile(samples, 50)),
		P99ms: millis(percentile(samples, 99)), MaxMs: millis(samples[len(samples)-1])}
}

// percentile returns the nearest-rank p-th percentile of sorted samples
// (the smallest sample with at least p% of the samples at or below it).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

func millis(d time.Duration) float64 {
	return math.Round(float64(d.Microseconds())/10) / 100
}
