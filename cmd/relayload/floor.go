package main

import (
	"fmt"
	"math"
	"runtime"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// floorIterations is how many envelopes the crypto floor seals and opens.
const floorIterations = 300

// cryptoFloor is the CPU time this machine needs for the cryptography the
// protocol makes every delivery pay, measured in-process before the load:
// the broker seals the envelope to the agent's key and signs it
// (protocol.SealEnvelope), the bridge verifies the signature and opens the
// box (protocol.OpenEnvelope). No deployment can deliver an event for less
// CPU, so the system under test's CPU per delivery divided by it says how
// much of the cost is everything else (HTTP, the store, JSON, scheduling),
// a ratio that travels between machines and days when absolute figures do
// not.
type cryptoFloor struct {
	Iterations int     `json:"iterations"`
	BodyBytes  int     `json:"body_bytes"` // the run's webhook body
	BrokerUS   float64 `json:"broker_us"`  // seal + sign, per copy
	BridgeUS   float64 `json:"bridge_us"`  // verify + open, per copy
	TotalUS    float64 `json:"us_per_delivery"`
	// Clock is "thread CPU" (the measuring thread's user+system time) or,
	// where that cannot be read, "wall".
	Clock string `json:"clock"`
}

// measureCryptoFloor seals n envelopes of body to one agent key, then
// opens them, timing each half on the calling goroutine's OS thread.
func measureCryptoFloor(body []byte, n int) (cryptoFloor, error) {
	agent, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		return cryptoFloor{}, fmt.Errorf("crypto floor: %w", err)
	}
	signer, err := crypto.GenerateSigningKey()
	if err != nil {
		return cryptoFloor{}, fmt.Errorf("crypto floor: %w", err)
	}
	ts := time.Now().Unix()
	env := protocol.Envelope{Source: protocol.SourceSlack, Type: protocol.TypeEventCallback, BrokerTimestamp: ts, Payload: body}
	plain := env.Plaintext()
	defer crypto.Wipe(plain)
	const warm = 10
	msgs := make([]protocol.InboxMessage, n+warm)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	clock, now := floorClock()
	var start time.Duration
	for i := range msgs {
		if i == warm {
			start = now()
		}
		if msgs[i], err = protocol.SealEnvelope(plain, "T0FLOOR", "", ts, agent.Public, signer); err != nil {
			return cryptoFloor{}, fmt.Errorf("crypto floor: %w", err)
		}
	}
	sealed := now() - start
	pub := signer.Public()
	for i := range msgs {
		if i == warm {
			start = now()
		}
		_, pt, err := protocol.OpenEnvelope(msgs[i], pub, agent)
		if err != nil {
			return cryptoFloor{}, fmt.Errorf("crypto floor: %w", err)
		}
		crypto.Wipe(pt)
	}
	opened := now() - start
	f := cryptoFloor{Iterations: n, BodyBytes: len(body), Clock: clock,
		BrokerUS: round1(float64(sealed.Microseconds()) / float64(n)),
		BridgeUS: round1(float64(opened.Microseconds()) / float64(n))}
	f.TotalUS = round1(f.BrokerUS + f.BridgeUS)
	return f, nil
}

// floorRatio is the system under test's CPU per delivery in crypto
// floors (0 when either is unknown).
func floorRatio(sutUSPerDelivery float64, f *cryptoFloor) float64 {
	if f == nil || f.TotalUS <= 0 || sutUSPerDelivery <= 0 {
		return 0
	}
	return math.Round(sutUSPerDelivery/f.TotalUS*100) / 100
}

// wallClock is the monotonic wall clock, as a floorClock.
func wallClock() (string, func() time.Duration) {
	t0 := time.Now()
	return "wall", func() time.Duration { return time.Since(t0) }
}
