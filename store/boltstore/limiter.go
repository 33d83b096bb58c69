package boltstore

import (
	"github.com/sealrelay/sealrelay/state"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// localBuckets are in-memory token buckets by key (golang.org/x/time/rate
// limiters), for the embedded state's Allow. The zero value is ready to use.
type localBuckets struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

// allow takes one token from the bucket key at now, creating it full. The
// bucket follows a changed limit. When no token is available it reports how
// long until one is.
func (l *localBuckets) allow(key string, limit state.RateLimit, now time.Time) (bool, time.Duration) {
	if limit.Rate <= 0 || limit.Burst < 1 {
		return true, 0
	}
	r := rate.Limit(limit.Rate)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*rate.Limiter{}
	}
	b := l.m[key]
	switch {
	case b == nil:
		b = rate.NewLimiter(r, limit.Burst)
		l.m[key] = b
	case b.Limit() != r || b.Burst() != limit.Burst:
		b.SetLimitAt(now, r)
		b.SetBurstAt(now, limit.Burst)
	}
	res := b.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep forgets the buckets that are full again at now (a new one starts
// full anyway).
func (l *localBuckets) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.m {
		if b.TokensAt(now) >= float64(b.Burst()) {
			delete(l.m, k)
		}
	}
}

// len returns how many buckets are kept.
func (l *localBuckets) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
