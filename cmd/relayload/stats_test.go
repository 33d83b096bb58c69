package main

import (
	"testing"
	"time"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// TestPercentile checks nearest-rank percentiles and the summary.
func TestPercentile(t *testing.T) {
	t.Parallel()
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(100 - i) // unsorted: 100 ms … 1 ms
	}
	tests := []struct {
		name    string
		samples []time.Duration
		want    latencyStats
	}{
		{name: "none", samples: nil, want: latencyStats{}},
		{name: "one", samples: []time.Duration{ms(7)}, want: latencyStats{N: 1, P50ms: 7, P99ms: 7, MaxMs: 7}},
		{name: "two", samples: []time.Duration{ms(9), ms(1)}, want: latencyStats{N: 2, P50ms: 1, P99ms: 9, MaxMs: 9}},
		{name: "hundred", samples: hundred, want: latencyStats{N: 100, P50ms: 50, P99ms: 99, MaxMs: 100}},
		{name: "fractions", samples: []time.Duration{1500 * time.Microsecond, 2250 * time.Microsecond, 10 * time.Microsecond},
			want: latencyStats{N: 3, P50ms: 1.5, P99ms: 2.25, MaxMs: 2.25}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := summarize(tc.samples); got != tc.want {
				t.Fatalf("summarize = %+v, want %+v", got, tc.want)
			}
		})
	}
	if got := percentile(nil, 50); got != 0 {
		t.Fatalf("percentile(nil) = %v", got)
	}
}

// step is one thing that happens to the tracker.
type step struct {
	op  string // "sent", "ok", "refused", "got", "dropped"
	id  string
	c   int // consumer (got)
	ch  int // channel (sent)
	seq int // sequence (sent)
}

// TestTrackerAccounting drives the loss, duplicate and order accounting
// through the orders in which posts, answers and deliveries can arrive.
func TestTrackerAccounting(t *testing.T) {
	t.Parallel()
	base := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name      string
		consumers int
		steps     []step
		want      counts
		settled   bool
	}{
		{name: "all delivered", consumers: 2, settled: true,
			steps: []step{{op: "sent", id: "a", seq: 1}, {op: "ok", id: "a"}, {op: "got", id: "a", c: 0}, {op: "got", id: "a", c: 1}},
			want: counts{Posted: 1, Accepted: 1, Delivered: 2,
				PerConsumer: []consumerCounts{{Delivered: 1}, {Delivered: 1}}}},
		{name: "delivered before the answer", consumers: 1, settled: true,
			steps: []step{{op: "sent", id: "a", seq: 1}, {op: "got", id: "a"}, {op: "ok", id: "a"}},
			want:  counts{Posted: 1, Accepted: 1, Delivered: 1, PerConsumer: []consumerCounts{{Delivered: 1}}}},
		{name: "lost at one consumer", consumers: 2,
			steps: []step{{op: "sent", id: "a", seq: 1}, {op: "ok", id: "a"}, {op: "got", id: "a", c: 1}},
			want: counts{Posted: 1, Accepted: 1, Delivered: 1, Lost: 1,
				PerConsumer: []consumerCounts{{Lost: 1}, {Delivered: 1}}}},
		{name: "duplicate", consumers: 1, settled: true,
			steps: []step{{op: "sent", id: "a", seq: 1}, {op: "ok", id: "a"}, {op: "got", id: "a"}, {op: "got", id: "a"}, {op: "got", id: "a"}},
			want:  counts{Posted: 1, Accepted: 1, Delivered: 1, Duplicated: 2, PerConsumer: []consumerCounts{{Delivered: 1, Duplicated: 2}}}},
		{name: "out of order on one channel", consumers: 1, settled: true,
			steps: []step{{op: "sent", id: "a", seq: 1}, {op: "sent", id: "b", seq: 2}, {op: "sent", id: "c", seq: 3},
				{op: "ok", id: "a"}, {op: "ok", id: "b"}, {op: "ok", id: "c"},
				{op: "got", id: "b"}, {op: "got", id: "a"}, {op: "got", id: "c"}},
			want: counts{Posted: 3, Accepted: 3, Delivered: 3, OutOfOrder: 1, PerConsumer: []consumerCounts{{Delivered: 3, OutOfOrder: 1}}}},
		{name: "channels are ordered separately", consumers: 1, settled: true,
			steps: []step{{op: "sent", id: "a", ch: 1, seq: 1}, {op: "sent", id: "b", ch: 2, seq: 1}, {op: "sent", id: "c", ch: 1, seq: 2},
				{op: "ok", id: "a"}, {op: "ok", id: "b"}, {op: "ok", id: "c"},
				{op: "got", id: "a"}, {op: "got", id: "c"}, {op: "got", id: "b"}},
			want: counts{Posted: 3, Accepted: 3, Delivered: 3, PerConsumer: []consumerCounts{{Delivered: 3}}}},
		{name: "a duplicate of an old event is not also out of order", consumers: 1, settled: true,
			steps: []step{{op: "sent", id: "a", seq: 1}, {op: "sent", id: "b", seq: 2}, {op: "ok", id: "a"}, {op: "ok", id: "b"},
				{op: "got", id: "a"}, {op: "got", id: "b"}, {op: "got", id: "a"}},
			want: counts{Posted: 2, Accepted: 2, Delivered: 2, Duplicated: 1, PerConsumer: []consumerCounts{{Delivered: 2, Duplicated: 1}}}},
		{name: "refused is not lost", consumers: 1, settled: true,
			steps: []step{{op: "sent", id: "a", seq: 1}, {op: "refused", id: "a"}},
			want:  counts{Posted: 1, Rejected: 1, PerConsumer: []consumerCounts{{}}}},
		{name: "unanswered post keeps the run unsettled", consumers: 1,
			steps: []step{{op: "sent", id: "a", seq: 1}, {op: "got", id: "a"}},
			want:  counts{Posted: 1, Delivered: 1, PerConsumer: []consumerCounts{{Delivered: 1}}}},
		{name: "foreign and stream drops", consumers: 1, settled: true,
			steps: []step{{op: "got", id: "other"}, {op: "got", id: "x", c: 5}, {op: "dropped", seq: 3}},
			want:  counts{Foreign: 2, Dropped: 3, PerConsumer: []consumerCounts{{}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := newTracker(tc.consumers)
			for i, s := range tc.steps {
				at := base.Add(ms(i))
				switch s.op {
				case "sent":
					tr.sent(s.id, s.ch, s.seq, at)
				case "ok", "refused":
					tr.answered(s.id, s.op == "ok", ms(1))
				case "got":
					tr.delivered(s.c, s.id, at)
				case "dropped":
					tr.streamDropped(s.seq)
				}
			}
			tr.donePosting()
			got := tr.counts()
			if !equalCounts(got, tc.want) {
				t.Fatalf("counts = %+v, want %+v", got, tc.want)
			}
			select {
			case <-tr.settled:
				if !tc.settled {
					t.Fatal("settled, want outstanding deliveries")
				}
			default:
				if tc.settled {
					t.Fatal("not settled, want every accepted event delivered")
				}
			}
		})
	}
}

func equalCounts(a, b counts) bool {
	if len(a.PerConsumer) != len(b.PerConsumer) {
		return false
	}
	for i := range a.PerConsumer {
		if a.PerConsumer[i] != b.PerConsumer[i] {
			return false
		}
	}
	a.PerConsumer, b.PerConsumer = nil, nil
	return a.Posted == b.Posted && a.Accepted == b.Accepted && a.Rejected == b.Rejected &&
		a.Delivered == b.Delivered && a.Lost == b.Lost && a.Duplicated == b.Duplicated &&
		a.OutOfOrder == b.OutOfOrder && a.Foreign == b.Foreign && a.Dropped == b.Dropped
}

// TestTrackerLatencies: end-to-end latency runs from the post to the first
// delivery, once per consumer; answers are timed as given.
func TestTrackerLatencies(t *testing.T) {
	t.Parallel()
	tr := newTracker(2)
	t0 := time.Unix(1_700_000_000, 0)
	tr.sent("a", 0, 1, t0)
	tr.answered("a", true, ms(3))
	tr.answered("a", true, ms(99)) // a second answer for one post is ignored
	tr.delivered(0, "a", t0.Add(ms(10)))
	tr.delivered(1, "a", t0.Add(ms(20)))
	tr.delivered(1, "a", t0.Add(ms(90))) // duplicate: no latency sample
	answer, e2e, last := tr.latencies()
	if len(answer) != 1 || answer[0] != ms(3) {
		t.Fatalf("answer samples %v, want [3ms]", answer)
	}
	if len(e2e) != 2 || e2e[0] != ms(10) || e2e[1] != ms(20) {
		t.Fatalf("end-to-end samples %v, want [10ms 20ms]", e2e)
	}
	if !last.Equal(t0.Add(ms(20))) {
		t.Fatalf("last delivery %v, want the first delivery of the last consumer", last)
	}
}
