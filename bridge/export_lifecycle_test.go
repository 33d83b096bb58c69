package bridge

import "time"

// OnLifecycle makes b report every lifecycle event ("renewed",
// "renew_failed", "save_failed", "previous_key_dropped") to f. Call it
// before Run.
func OnLifecycle(b *Bridge, f func(event string, err error)) { b.life.hook = f }

// SetPreviousKeyLastUse pretends the previous box key last opened a
// message at t. Call it before Run.
func SetPreviousKeyLastUse(b *Bridge, t time.Time) { b.life.prevLastUse = t }

// RenewAt returns when a token issued at issued and expiring at expires is
// renewed.
func RenewAt(expires, issued time.Time) time.Time {
	return (&tokenState{expires: expires, issued: issued}).renewAt()
}
