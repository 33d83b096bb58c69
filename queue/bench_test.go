package queue

// Benchmarks. Run against the local Redis (REDIS_URL overrides) with
//
//	go test -run x -bench . -benchtime 2s ./queue/
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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

// benchEnqueue runs b.N enqueues from benchProducers goroutines into
// `inboxes` inboxes and reports msgs/s; keyed uses EnqueueID with fresh ids
// (the broker's path for Events API copies).
func benchEnqueue(b *testing.B, s Store, inboxes int, keyed bool) {
	body := benchBody()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchProducers)
	b.SetBytes(benchPayload)
	cpu := redisCPU(s)
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
	reportRedisCPU(b, s, cpu, b.N)
}

// benchPullAck pulls (batches of 10) and acks b.N messages with benchPullers
// goroutines, each draining its own inbox, and reports msgs/s. Messages are
// pre-filled in untimed rounds of benchChunk.
func benchPullAck(b *testing.B, s Store) {
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
		cpu0 := redisCPU(s)
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
		cpu += redisCPU(s) - cpu0
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
	if _, ok := s.(*RedisStore); ok {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "redis-cpu-µs/msg")
	}
}

// benchWakeUp measures, b.N times, the time from the start of an Enqueue on
// a to the return of a Pull already waiting on b.
func benchWakeUp(b *testing.B, a, bs Store) {
	ctx := context.Background()
	body := benchBody()
	lat := make([]time.Duration, 0, b.N)
	wc := bs.(waitCounter)
	b.ResetTimer()
	for range b.N {
		res := make(chan pullResult, 1)
		go func() {
			msgs, err := bs.Pull(ctx, "wake", 1, 30*time.Second)
			res <- pullResult{msgs, err, time.Now()}
		}()
		for wc.waiting("wake") == 0 {
			time.Sleep(20 * time.Microsecond)
		}
		start := time.Now()
		if _, err := a.Enqueue(ctx, "wake", body); err != nil {
			b.Fatal(err)
		}
		r := <-res
		if r.err != nil || len(r.msgs) != 1 {
			b.Fatalf("woken pull: %d messages, %v", len(r.msgs), r.err)
		}
		lat = append(lat, r.at.Sub(start))
		if _, err := bs.Ack(ctx, "wake", []string{r.msgs[0].Receipt}); err != nil {
			b.Fatal(err)
		}
		for wc.waiting("wake") != 0 { // the waiter deregisters after returning
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

// redisCPU returns the Redis server's CPU time so far (INFO cpu), or 0 for a
// store that is not a RedisStore.
func redisCPU(s Store) time.Duration {
	rs, ok := s.(*RedisStore)
	if !ok {
		return 0
	}
	info, err := rs.c.Info(context.Background(), "cpu").Result()
	if err != nil {
		return 0
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// reportRedisCPU reports the server CPU per message: what bounds throughput
// when Redis has a core to itself, whatever else loads the machine. Other
// clients of the same server inflate it.
func reportRedisCPU(b *testing.B, s Store, before time.Duration, msgs int) {
	if _, ok := s.(*RedisStore); ok && msgs > 0 {
		b.ReportMetric(float64((redisCPU(s)-before).Microseconds())/float64(msgs), "redis-cpu-µs/msg")
	}
}

var monitorWarning sync.Once

// warnMonitor logs (once per run) when a MONITOR client is attached to the
// server.
func warnMonitor(b *testing.B, s *RedisStore) {
	list, err := s.c.ClientList(context.Background()).Result()
	if err != nil {
		return
	}
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, "cmd=monitor") {
			monitorWarning.Do(func() {
				b.Logf("WARNING: a MONITOR client is attached to the Redis server (%s); expect Redis CPU per message to be several times higher", strings.Fields(line)[1])
			})
			return
		}
	}
}

func benchRedisStores(b *testing.B, n int) []Store {
	var out []Store
	for _, s := range openRedisStores(b, RedisOptions{Options: Options{Capacity: 1 << 30}}, n) {
		out = append(out, s)
	}
	warnMonitor(b, out[0].(*RedisStore))
	return out
}

func BenchmarkRedisEnqueue(b *testing.B) {
	for _, n := range []int{1, benchProducers} {
		b.Run(fmt.Sprintf("inboxes=%d", n), func(b *testing.B) {
			benchEnqueue(b, benchRedisStores(b, 1)[0], n, false)
		})
	}
}

// BenchmarkRedisEnqueueID is BenchmarkRedisEnqueue through EnqueueID.
func BenchmarkRedisEnqueueID(b *testing.B) {
	for _, n := range []int{1, benchProducers} {
		b.Run(fmt.Sprintf("inboxes=%d", n), func(b *testing.B) {
			benchEnqueue(b, benchRedisStores(b, 1)[0], n, true)
		})
	}
}

func BenchmarkRedisPullAck(b *testing.B) {
	benchPullAck(b, benchRedisStores(b, 1)[0])
}

func BenchmarkRedisWakeUp(b *testing.B) {
	s := benchRedisStores(b, 2)
	benchWakeUp(b, s[0], s[1])
}

func benchBoltStore(b *testing.B) Store {
	s, err := OpenBoltStore(b.TempDir(), Options{Capacity: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func BenchmarkBoltEnqueue(b *testing.B) {
	for _, n := range []int{1, benchProducers} {
		b.Run(fmt.Sprintf("inboxes=%d", n), func(b *testing.B) {
			benchEnqueue(b, benchBoltStore(b), n, false)
		})
	}
}

// BenchmarkBoltEnqueueID is BenchmarkBoltEnqueue through EnqueueID.
func BenchmarkBoltEnqueueID(b *testing.B) {
	for _, n := range []int{1, benchProducers} {
		b.Run(fmt.Sprintf("inboxes=%d", n), func(b *testing.B) {
			benchEnqueue(b, benchBoltStore(b), n, true)
		})
	}
}

func BenchmarkBoltPullAck(b *testing.B) {
	benchPullAck(b, benchBoltStore(b))
}

func BenchmarkBoltWakeUp(b *testing.B) {
	s := benchBoltStore(b)
	benchWakeUp(b, s, s)
}
