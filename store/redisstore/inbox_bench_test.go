package redisstore

// Inbox benchmarks against $REDIS_URL (see queue/queuetest/bench.go):
//
//	go test -run x -bench . -benchtime 2s ./store/redisstore/

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/queue/queuetest"
)

const benchProducers = 32

// redisCPU returns a meter of the Redis server's CPU time (INFO cpu).
func redisCPU(rs *Inbox) queuetest.ServerMeter {
	return func() time.Duration { return serverCPU(rs) }
}

func serverCPU(rs *Inbox) time.Duration { return redisServerCPU(rs.c) }

// redisServerCPU returns the CPU time of c's Redis server (INFO cpu).
func redisServerCPU(c redis.UniversalClient) time.Duration {
	info, err := c.Info(context.Background(), "cpu").Result()
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

var monitorWarning sync.Once

// warnMonitor logs (once per run) when a MONITOR client is attached to the
// server.
func warnMonitor(b *testing.B, s *Inbox) {
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

func benchRedisStores(b *testing.B, n int) []*Inbox {
	out := openRedisStores(b, InboxOptions{Options: queue.Options{Capacity: 1 << 30}}, n)
	warnMonitor(b, out[0])
	return out
}

func BenchmarkRedisEnqueue(b *testing.B) {
	for _, n := range []int{1, benchProducers} {
		b.Run(fmt.Sprintf("inboxes=%d", n), func(b *testing.B) {
			s := benchRedisStores(b, 1)[0]
			queuetest.BenchEnqueue(b, s, n, false, redisCPU(s))
		})
	}
}

// BenchmarkRedisEnqueueID is BenchmarkRedisEnqueue through EnqueueID.
func BenchmarkRedisEnqueueID(b *testing.B) {
	for _, n := range []int{1, benchProducers} {
		b.Run(fmt.Sprintf("inboxes=%d", n), func(b *testing.B) {
			s := benchRedisStores(b, 1)[0]
			queuetest.BenchEnqueue(b, s, n, true, redisCPU(s))
		})
	}
}

func BenchmarkRedisPullAck(b *testing.B) {
	s := benchRedisStores(b, 1)[0]
	queuetest.BenchPullAck(b, s, redisCPU(s))
}

func BenchmarkRedisWakeUp(b *testing.B) {
	s := benchRedisStores(b, 2)
	queuetest.BenchWakeUp(b, s[0], s[1], s[1].waiting)
}

// BenchmarkRedisPullAckSize pulls and acks b.N messages of one inbox in
// pulls of n (1: a low rate, one message per pull; 100: a backlog
// draining), filled beforehand in untimed rounds, and reports the Redis
// server's CPU per message.
func BenchmarkRedisPullAckSize(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			s := benchRedisStores(b, 1)[0]
			ctx := context.Background()
			body := make([]byte, 2048)
			var cpu time.Duration
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			b.StopTimer()
			for done := 0; done < b.N; {
				round := min(1000, b.N-done)
				items := make([]queue.Item, round)
				for i := range items {
					items[i] = queue.Item{Inbox: "size", Body: body}
				}
				for _, r := range s.EnqueueIDs(ctx, items) {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
				b.StartTimer()
				cpu0 := serverCPU(s)
				for got := 0; got < round; {
					msgs, err := s.Pull(ctx, "size", n, 0)
					if err != nil || len(msgs) == 0 {
						b.Fatalf("pull: %d messages, %v", len(msgs), err)
					}
					receipts := make([]string, len(msgs))
					for i, m := range msgs {
						receipts[i] = m.Receipt
					}
					if k, err := s.Ack(ctx, "size", receipts); err != nil || k != len(msgs) {
						b.Fatalf("ack: %d of %d, %v", k, len(msgs), err)
					}
					got += len(msgs)
				}
				cpu += serverCPU(s) - cpu0
				b.StopTimer()
				done += round
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "redis-cpu-µs/msg")
		})
	}
}
