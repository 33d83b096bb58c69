package main

import (
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/sealrelay/sealrelay/broker"
)

// Defaults of the /api/call settings (see broker.DefaultCall*).
const (
	defaultCallRatePost    = "10/200"
	defaultCallRateRead    = "10/200"
	defaultCallRateOther   = "5/100"
	defaultCallMaxResponse = "2097152"
)

// callConfig is the /api/call part of config.
type callConfig struct {
	Policy                        *broker.CallPolicy
	PostRate, ReadRate, OtherRate broker.RateLimit
	MaxResponse                   int64
}

// call resolves the --call-* settings into c. The policy file is read and
// validated here, so a bad file stops `broker serve` at start with an error
// naming the file, the entry and the field.
func (r *resolver) call(c *callConfig) {
	s, v := r.Get("call-policy")
	if v.Text != "" {
		p, err := broker.LoadCallPolicy(v.Text)
		if err != nil {
			r.Problem("%s: %v", s.Describe(v), err)
		}
		c.Policy = p
	}
	c.PostRate = parseRateBurst(r.Text("call-rate-post"))
	c.ReadRate = parseRateBurst(r.Text("call-rate-read"))
	c.OtherRate = parseRateBurst(r.Text("call-rate-other"))
	c.MaxResponse, _ = strconv.ParseInt(r.Text("call-max-response"), 10, 64)
}

// checkMaxResponse accepts --call-max-response: 64 KiB to 64 MiB.
func checkMaxResponse(text string) error {
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n < 64<<10 || n > 64<<20 {
		return errors.New("is not a size: use a number of bytes from 65536 to 67108864, such as 2097152")
	}
	return nil
}

// checkRateBurst accepts RATE/BURST ("10/200") or "0" (no limit).
func checkRateBurst(text string) error {
	if _, ok := rateBurst(text); !ok {
		return errors.New("is not a rate: use calls per second and a burst such as 10/200 (0 = no limit)")
	}
	return nil
}

// parseRateBurst parses a checked RATE/BURST value.
func parseRateBurst(text string) broker.RateLimit {
	l, _ := rateBurst(text)
	return l
}

// rateBurst parses RATE/BURST ("10/200"); "0" means no limit.
func rateBurst(text string) (broker.RateLimit, bool) {
	if text == "0" {
		return broker.RateLimit{Rate: -1}, true
	}
	rate, burst, ok := strings.Cut(text, "/")
	f, err1 := strconv.ParseFloat(rate, 64)
	b, err2 := strconv.Atoi(burst)
	if !ok || err1 != nil || err2 != nil || math.IsNaN(f) || f <= 0 || f > 1e6 || b < 1 || b > 1_000_000 {
		return broker.RateLimit{}, false
	}
	return broker.RateLimit{Rate: f, Burst: b}, true
}
