package main

import (
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
	s, v := settingByName("call-policy"), r.get(settingByName("call-policy"))
	if v.text != "" {
		p, err := broker.LoadCallPolicy(v.text)
		if err != nil {
			r.problem("%s: %v", s.describe(v), err)
		}
		c.Policy = p
	}
	c.PostRate = r.rateBurst(settingByName("call-rate-post"))
	c.ReadRate = r.rateBurst(settingByName("call-rate-read"))
	c.OtherRate = r.rateBurst(settingByName("call-rate-other"))
	s, v = settingByName("call-max-response"), r.get(settingByName("call-max-response"))
	n, err := strconv.ParseInt(v.text, 10, 64)
	if err != nil || n < 64<<10 || n > 64<<20 {
		r.problem("%s is not a size: use a number of bytes from 65536 to 67108864, such as 2097152", s.describe(v))
	}
	c.MaxResponse = n
}

// rateBurst parses RATE/BURST ("10/200"); "0" means no limit.
func (r *resolver) rateBurst(s *setting) broker.RateLimit {
	v := r.get(s)
	if v.text == "0" {
		return broker.RateLimit{Rate: -1}
	}
	rate, burst, ok := strings.Cut(v.text, "/")
	f, err1 := strconv.ParseFloat(rate, 64)
	b, err2 := strconv.Atoi(burst)
	if !ok || err1 != nil || err2 != nil || math.IsNaN(f) || f <= 0 || f > 1e6 || b < 1 || b > 1_000_000 {
		r.problem("%s is not a rate: use calls per second and a burst such as 10/200 (0 = no limit)", s.describe(v))
		return broker.RateLimit{}
	}
	return broker.RateLimit{Rate: f, Burst: b}
}
