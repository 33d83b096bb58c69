package queuetest

// Benchmark bodies shared by the inbox engines' benchmarks
// (store/redisstore, store/boltstore). Run them with
//
//	go test -run x -bench . -benchtime 2s ./store/redisstore/ ./store/boltstore/
//
// BenchmarkRedisWakeUp reports percentiles over b.N runs; add -benchtime
// 1000x to pin it to 1,000. Each benchmark reports msgs/s or latency
// percentiles through b.ReportMetric; the Redis ones also report the Redis
// server's CPU time per message (redis-cpu-µs/msg), which bounds throughput
// when Redis has a core of its own whatever else loads the machine.
//
// A MONITOR client attached to the server makes Redis format every command,
// script-internal ones included, for the monitor, which multiplies its CPU
// per message several times; the benchmarks log a warning when one is
// attached. Point REDIS_URL at a private redis-server to measure without it.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/queue"
)

const (
	benchPayload   = 2048
	benchProducers = 32
	benchPullers   = 16
	benchChunk     = 10000 // messages pre-filled per round of a pull benchmark
	benchPullBatch = 10
)

// benchBody is 2 KB of base64 text, like the broker's stored messages (JSON
// around a base64 sealed box).
func benchBody() []byte {
	raw := make([]byte, benchPayload)
	_, _ = rand.Read(raw)
	return []byte(base64.StdEncoding.EncodeToString(raw)[:benchPayload])
}

// BenchEnqueue runs b.N enqueues from benchProducers goroutines into
// `inboxes` inboxes and reports msgs/s; keyed uses EnqueueID with fresh ids
// (the broker's path for Events API copies).
func BenchEnqueue(b *testing.B, s queue.Store, inboxes int, keyed bool, m ServerMeter) {
	body := benchBody()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchProducers)
	b.SetBytes(benchPayload)
	cpu := m.cpu()
	b.ResetTimer()
	start := time.Now()
	for p := range benchProducers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inbox := fmt.Sprintf("bench-%d", p%inboxes)
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				var err error
				if keyed {
					_, err = s.EnqueueID(ctx, inbox, "ev"+strconv.FormatInt(n, 10), body)
				} else {
					_, err = s.Enqueue(ctx, inbox, body)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	m.report(b, cpu, b.N)
}

// BenchPullAck pulls (batches of 10) and acks b.N messages with benchPullers
// goroutines, each draining its own inbox, and reports msgs/s. Messages are
// pre-filled in untimed rounds of benchChunk.
func BenchPullAck(b *testing.B, s queue.Store, m ServerMeter) {
	body := benchBody()
	ctx := context.Background()
	var timed, cpu time.Duration
	b.SetBytes(benchPayload)
	b.ResetTimer()
	b.StopTimer()
	for done := 0; done < b.N; {
		round := min(benchChunk, b.N-done)
		// Fill: round messages over benchPullers inboxes, concurrently.
		var wg sync.WaitGroup
		var fillErr atomic.Value
		for w := range benchPullers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < round; i += benchPullers {
					if _, err := s.Enqueue(ctx, fmt.Sprintf("pull-%d", w), body); err != nil {
						fillErr.Store(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := fillErr.Load().(error); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		cpu0 := m.cpu()
		var got atomic.Int64
		errs := make(chan error, benchPullers)
		for w := range benchPullers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				inbox := fmt.Sprintf("pull-%d", w)
				receipts := make([]string, 0, 10)
				for {
					msgs, err := s.Pull(ctx, inbox, benchPullBatch, 0)
					if err != nil {
						errs <- err
						return
					}
					if len(msgs) == 0 {
						return
					}
					receipts = receipts[:0]
					for _, m := range msgs {
						receipts = append(receipts, m.Receipt)
					}
					n, err := s.Ack(ctx, inbox, receipts)
					if err != nil {
						errs <- err
						return
					}
					got.Add(int64(n))
				}
			}()
		}
		wg.Wait()
		timed += time.Since(start)
		cpu += m.cpu() - cpu0
		b.StopTimer()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		if int(got.Load()) != round {
			b.Fatalf("acked %d of %d", got.Load(), round)
		}
		done += round
	}
	b.ReportMetric(float64(b.N)/timed.Seconds(), "msgs/s")
	if m != nil {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "redis-cpu-µs/msg")
	}
}

// BenchWakeUp measures, b.N times, the time from the start of an Enqueue on
// a to the return of a Pull already waiting on b.
func BenchWakeUp(b *testing.B, a, bs queue.Store, waiting func(inbox string) int) {
	ctx := context.Background()
	body := benchBody()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		res := make(chan PullResult, 1)
		go func() {
			msgs, err := bs.Pull(ctx, "wake", 1, 30*time.Second)
			res <- PullResult{Msgs: msgs, Err: err, At: time.Now()}
		}()
		for waiting("wake") == 0 {
			time.Sleep(20 * time.Microsecond)
		}
		start := time.Now()
		if _, err := a.Enqueue(ctx, "wake", body); err != nil {
			b.Fatal(err)
		}
		r := <-res
		if r.Err != nil || len(r.Msgs) != 1 {
			b.Fatalf("woken pull: %d messages, %v", len(r.Msgs), r.Err)
		}
		lat = append(lat, r.At.Sub(start))
		if _, err := bs.Ack(ctx, "wake", []string{r.Msgs[0].Receipt}); err != nil {
			b.Fatal(err)
		}
		for waiting("wake") != 0 { // the waiter deregisters after returning
			time.Sleep(20 * time.Microsecond)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// ServerMeter reads the CPU time a store's server has used so far (Redis:
// INFO cpu); nil for an embedded store. The benchmarks report it per
// message (redis-cpu-µs/msg): what bounds throughput when the server has
// a core to itself, whatever else loads the machine.
type ServerMeter func() time.Duration

func (m ServerMeter) cpu() time.Duration {
	if m == nil {
		return 0
	}
	return m()
}

func (m ServerMeter) report(b *testing.B, before time.Duration, msgs int) {
	if m != nil && msgs > 0 {
		b.ReportMetric(float64((m()-before).Microseconds())/float64(msgs), "redis-cpu-µs/msg")
	}
}
