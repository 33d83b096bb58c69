package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"time"
)

// report is the outcome of one run; --json prints it as is.
type report struct {
	OK          bool    `json:"ok"`
	Mode        string  `json:"mode"`    // "spawn" or "existing"
	Store       string  `json:"store"`   // spawn: "embedded" or "redis"
	Consume     string  `json:"consume"` // "sse" or "forward"
	Consumers   int     `json:"consumers"`
	Concurrency int     `json:"concurrency"`
	Channels    int     `json:"channels"`
	RateTarget  float64 `json:"rate_target_per_s"` // 0 = flat out

	PostSeconds  float64 `json:"post_seconds"`
	TotalSeconds float64 `json:"total_seconds"` // posting plus drain
	Drained      bool    `json:"drained"`       // every accepted event reached every consumer before --drain-timeout

	Posted   int `json:"posted"`
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	// Delivered counts first deliveries, summed over consumers.
	Delivered  int `json:"delivered"`
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	OutOfOrder int `json:"out_of_order"`
	Foreign    int `json:"foreign"` // deliveries of events this run did not post (ignored)
	Dropped    int `json:"stream_dropped"`

	AcceptedPerSec  float64 `json:"accepted_per_s"`  // accepted / post_seconds
	DeliveredPerSec float64 `json:"delivered_per_s"` // delivered / (first post → last delivery), all consumers
	EventsPerSec    float64 `json:"events_per_s"`    // delivered_per_s / consumers

	WebhookAnswer latencyStats `json:"webhook_answer"`
	EndToEnd      latencyStats `json:"end_to_end"`

	PerConsumer []consumerCounts `json:"per_consumer"`
	// CPU has a line per watched process, then one for Redis when the run
	// knows it (--redis-url).
	CPU []cpuLine `json:"cpu"`
	// RedisShared says the redis line is the whole server's CPU: every
	// client of that Redis counts, not only this deployment.
	RedisShared bool `json:"redis_cpu_covers_all_clients,omitempty"`
	// SystemUnderTest totals the lines other than the harness's own
	// (broker, bridges, --pid processes, Redis); absent when there are
	// none.
	SystemUnderTest *sutLine `json:"system_under_test,omitempty"`
	// CryptoFloor is the protocol's mandatory cryptography on this
	// machine, measured before the load.
	CryptoFloor *cryptoFloor `json:"crypto_floor,omitempty"`

	// Profile says where --profile wrote the CPU profiles and how to
	// read them.
	Profile *profileReport `json:"profile,omitempty"`

	LoadAverage string   `json:"load_average"`
	CPUs        int      `json:"cpus"`
	Errors      []string `json:"errors,omitempty"`
	ErrorCount  int      `json:"error_count"`
}

// cpuLine is one process's CPU use over the run.
type cpuLine struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// CPUms is user+system CPU time during the run; -1 when /proc could
	// not be read.
	CPUms          float64 `json:"cpu_ms"`
	USPerEvent     float64 `json:"cpu_us_per_event"`    // per accepted event
	USPerDelivered float64 `json:"cpu_us_per_delivery"` // per delivery (events × consumers)
}

// sutLine is the system under test's CPU: every line but the harness's.
type sutLine struct {
	Parts []string `json:"parts"`
	// CPUms is -1 when a part's CPU could not be read.
	CPUms          float64 `json:"cpu_ms"`
	USPerEvent     float64 `json:"cpu_us_per_event"`
	USPerDelivered float64 `json:"cpu_us_per_delivery"`
	// FloorRatio is USPerDelivered in crypto floors (0: unknown).
	FloorRatio float64 `json:"crypto_floor_ratio"`
}

// redisLine is the CPU line of the Redis server.
func redisLine(pid int, before, after time.Duration, err error, accepted, delivered int) cpuLine {
	l := cpuLine{Name: "redis", PID: pid, CPUms: -1}
	if err == nil {
		l = usage(l, after-before, accepted, delivered)
	}
	return l
}

// systemUnderTest sums the lines of every process but the harness (self).
func systemUnderTest(lines []cpuLine, self, accepted, delivered int) *sutLine {
	var s sutLine
	var used float64 // ms
	for _, l := range lines {
		if l.PID == self && l.Name == "relayload" {
			continue
		}
		s.Parts = append(s.Parts, l.Name)
		if l.CPUms < 0 || used < 0 {
			used = -1
			continue
		}
		used += l.CPUms
	}
	if len(s.Parts) == 0 {
		return nil
	}
	s.CPUms = -1
	if used >= 0 {
		s.CPUms = round1(used)
		if accepted > 0 {
			s.USPerEvent = round1(used * 1000 / float64(accepted))
		}
		if delivered > 0 {
			s.USPerDelivered = round1(used * 1000 / float64(delivered))
		}
	}
	return &s
}

func buildReport(o *options, d *deployment, tr *tracker, errs *errorLog, start, postEnd, end time.Time, drained bool) report {
	c := tr.counts()
	answer, e2e, last := tr.latencies()
	r := report{
		Mode: "existing", Store: d.store, Consume: "sse", Consumers: len(c.PerConsumer),
		Concurrency: o.Concurrency, Channels: o.Channels, RateTarget: o.Rate,
		PostSeconds: round3(postEnd.Sub(start).Seconds()), TotalSeconds: round3(end.Sub(start).Seconds()), Drained: drained,
		Posted: c.Posted, Accepted: c.Accepted, Rejected: c.Rejected, Delivered: c.Delivered,
		Lost: c.Lost, Duplicated: c.Duplicated, OutOfOrder: c.OutOfOrder, Foreign: c.Foreign, Dropped: c.Dropped,
		WebhookAnswer: summarize(answer), EndToEnd: summarize(e2e), PerConsumer: c.PerConsumer,
		LoadAverage: loadAverage(), CPUs: runtime.NumCPU(),
	}
	if o.Spawn {
		r.Mode = "spawn"
	}
	if len(d.sseURLs) == 0 {
		r.Consume = "forward"
	}
	if s := postEnd.Sub(start).Seconds(); s > 0 {
		r.AcceptedPerSec = round1(float64(c.Accepted) / s)
	}
	if s := last.Sub(start).Seconds(); s > 0 && c.Delivered > 0 {
		r.DeliveredPerSec = round1(float64(c.Delivered) / s)
		r.EventsPerSec = round1(r.DeliveredPerSec / float64(max(1, r.Consumers)))
	}
	r.Errors, r.ErrorCount = errs.snapshot()
	r.OK = c.Lost == 0 && c.Duplicated == 0 && c.OutOfOrder == 0 && c.Rejected == 0 && c.Posted > 0
	return r
}

func cpuReport(procs []watchedProc, before, after map[int]time.Duration, accepted, delivered int) []cpuLine {
	var out []cpuLine
	for _, p := range procs {
		l := cpuLine{Name: p.Name, PID: p.PID, CPUms: -1}
		b, ok1 := before[p.PID]
		a, ok2 := after[p.PID]
		if ok1 && ok2 {
			l = usage(l, a-b, accepted, delivered)
		}
		out = append(out, l)
	}
	return out
}

// usage fills l's CPU figures from used.
func usage(l cpuLine, used time.Duration, accepted, delivered int) cpuLine {
	l.CPUms = round1(float64(used.Microseconds()) / 1000)
	if accepted > 0 {
		l.USPerEvent = round1(float64(used.Microseconds()) / float64(accepted))
	}
	if delivered > 0 {
		l.USPerDelivered = round1(float64(used.Microseconds()) / float64(delivered))
	}
	return l
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// writeJSON prints r as indented JSON.
func writeJSON(w io.Writer, r *report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeHuman prints the summary a person reads.
func writeHuman(w io.Writer, r *report) {
	rate := "flat out"
	if r.RateTarget > 0 {
		rate = fmt.Sprintf("%g/s offered", r.RateTarget)
	}
	store := ""
	if r.Store != "" {
		store = ", " + r.Store + " store"
	}
	fmt.Fprintf(w, "relayload: %s mode%s, %d %s consumer(s), %d posters over %d channels, %s\n",
		r.Mode, store, r.Consumers, r.Consume, r.Concurrency, r.Channels, rate)
	fmt.Fprintf(w, "  posted     %d in %.2f s (%d accepted = %.1f/s, %d refused)\n", r.Posted, r.PostSeconds, r.Accepted, r.AcceptedPerSec, r.Rejected)
	fmt.Fprintf(w, "  delivered  %d (%.1f deliveries/s = %.1f events/s per consumer)%s\n", r.Delivered, r.DeliveredPerSec, r.EventsPerSec,
		map[bool]string{true: "", false: fmt.Sprintf("  — NOT drained after %.1f s", r.TotalSeconds)}[r.Drained])
	fmt.Fprintf(w, "  lost %d, duplicated %d, out of order %d, stream-dropped %d, foreign %d\n", r.Lost, r.Duplicated, r.OutOfOrder, r.Dropped, r.Foreign)
	fmt.Fprintf(w, "  webhook answer  p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms  (n=%d)\n", r.WebhookAnswer.P50ms, r.WebhookAnswer.P99ms, r.WebhookAnswer.MaxMs, r.WebhookAnswer.N)
	fmt.Fprintf(w, "  end to end      p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms  (n=%d)\n", r.EndToEnd.P50ms, r.EndToEnd.P99ms, r.EndToEnd.MaxMs, r.EndToEnd.N)
	if len(r.CPU) > 0 {
		fmt.Fprintf(w, "  CPU (user+system, 10 ms ticks)     ms   µs/event  µs/delivery\n")
		for _, c := range r.CPU {
			if c.CPUms < 0 {
				fmt.Fprintf(w, "    %-28s  unreadable (/proc/%d/stat)\n", fmt.Sprintf("%s [%d]", c.Name, c.PID), c.PID)
				continue
			}
			fmt.Fprintf(w, "    %-28s %7.0f  %9.1f  %11.1f\n", fmt.Sprintf("%s [%d]", c.Name, c.PID), c.CPUms, c.USPerEvent, c.USPerDelivered)
		}
		if s := r.SystemUnderTest; s != nil {
			if s.CPUms < 0 {
				fmt.Fprintf(w, "    %-28s  unknown (a part's CPU is unreadable)\n", "system under test")
			} else {
				fmt.Fprintf(w, "    %-28s %7.0f  %9.1f  %11.1f\n", "system under test", s.CPUms, s.USPerEvent, s.USPerDelivered)
			}
			fmt.Fprintf(w, "      (%s; not the harness)\n", strings.Join(s.Parts, " + "))
		}
		if r.RedisShared {
			fmt.Fprintf(w, "      (redis is the whole server's CPU: every client of that Redis counts, not only this deployment)\n")
		}
	}
	if f := r.CryptoFloor; f != nil {
		fmt.Fprintf(w, "  crypto floor: %.0f µs/event (broker %.0f, bridge %.0f)  — seal+sign and verify+open of one copy, %d envelopes of a %d-byte body, %s\n",
			f.TotalUS, f.BrokerUS, f.BridgeUS, f.Iterations, f.BodyBytes, f.Clock)
		if s := r.SystemUnderTest; s != nil && s.FloorRatio > 0 {
			fmt.Fprintf(w, "  system under test = %.1f x crypto floor (%.0f µs per delivery)\n", s.FloorRatio, s.USPerDelivered)
		}
	}
	if p := r.Profile; p != nil {
		fmt.Fprintf(w, "  CPU profiles (%d s each, from %.1f s into the posting) in %s; read them with:\n", p.Seconds, p.WarmupSeconds, p.Dir)
		for _, f := range p.Files {
			if f.Error != "" {
				fmt.Fprintf(w, "    %s: NOT written (%s)\n", f.Name, f.Error)
				continue
			}
			fmt.Fprintf(w, "    %s\n", f.Command)
		}
	}
	fmt.Fprintf(w, "  machine: %d CPUs, load average %s\n", r.CPUs, r.LoadAverage)
	if r.ErrorCount > 0 {
		fmt.Fprintf(w, "  %d error(s); the first distinct ones:\n", r.ErrorCount)
		for _, e := range r.Errors {
			fmt.Fprintf(w, "    %s\n", e)
		}
	}
	verdict := "OK: no loss, no duplicates, in order"
	if !r.OK {
		var why []string
		for _, x := range []struct {
			n    int
			what string
		}{{r.Lost, "lost"}, {r.Duplicated, "duplicated"}, {r.OutOfOrder, "out of order"}, {r.Rejected, "refused by the broker"}} {
			if x.n > 0 {
				why = append(why, fmt.Sprintf("%d %s", x.n, x.what))
			}
		}
		if r.Posted == 0 {
			why = append(why, "nothing posted")
		}
		verdict = "FAIL: " + strings.Join(why, ", ")
	} else if r.Profile.failed() {
		verdict += "; FAIL: a CPU profile is missing (see above)"
	}
	fmt.Fprintf(w, "  %s\n", verdict)
}
