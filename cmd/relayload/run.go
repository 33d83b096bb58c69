package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
)

// maxSecretFile caps a secret file read.
const maxSecretFile = 64 << 10

// result is one run's outcome.
type result struct {
	report report
	failed bool // loss, duplicates, reordering or refused webhooks
}

// run sets the deployment up (or connects to it), posts the load, drains
// and builds the report. stop ends posting early (first Ctrl-C); abort
// ends the drain too (second Ctrl-C).
func run(stop, abort context.Context, o options, stderr io.Writer) (result, error) {
	runID, err := newRunID()
	if err != nil {
		return result{}, err
	}
	errs := &errorLog{}

	// The forward receiver listens first: spawned bridges need its address.
	var fwdLn net.Listener
	if o.ForwardListen != "" || (o.Spawn && o.Consume == "forward") {
		addr := o.ForwardListen
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		if fwdLn, err = net.Listen("tcp", addr); err != nil {
			return result{}, fmt.Errorf("--forward-listen: %w", err)
		}
		defer fwdLn.Close()
	}

	if o.Profile != "" {
		if err := prepareProfileDir(&o); err != nil {
			return result{}, err
		}
	}

	var d *deployment
	if o.Spawn {
		fwdURL := ""
		if fwdLn != nil {
			fwdURL = "http://" + fwdLn.Addr().String()
		}
		if d, err = spawn(stop, &o, fwdURL, stderr); err != nil {
			if stop.Err() != nil {
				return result{}, errors.New("interrupted while starting the deployment")
			}
			return result{}, err
		}
	} else if d, err = existing(&o); err != nil {
		return result{}, err
	}
	failed := true
	defer func() { d.close(failed) }()

	// The crypto floor, before any load, on a body of the run's size.
	floor, err := measureCryptoFloor(newBodyTemplate(d.teamID, runID).appendBody(nil, 0, 0, 1, time.Now().Unix()), floorIterations)
	if err != nil {
		return result{}, err
	}
	var rw *redisWatch
	if o.RedisURL != "" {
		if rw, err = newRedisWatch(abort, o.RedisURL); err != nil {
			return result{}, err
		}
		defer rw.close()
	}

	consumers := len(d.sseURLs)
	if fwdLn != nil {
		consumers = max(1, o.Agents)
	}
	tr := newTracker(consumers)
	consumeCtx, stopConsumers := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopConsumers(); wg.Wait() }()
	if fwdLn != nil {
		secret := d.forwardSecret
		if !o.Spawn {
			b, err := readSecretFile(o.ForwardSecretFile)
			if err != nil {
				return result{}, fmt.Errorf("--forward-signing-secret-file: %w", err)
			}
			secret = string(b)
		}
		srv := &http.Server{Handler: &forwardReceiver{secret: secret, consumers: consumers, tr: tr, errs: errs},
			ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
		wg.Go(func() { _ = srv.Serve(fwdLn) })
		defer srv.Close()
	}
	streamClient := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for i, u := range d.sseURLs {
		c := &sseConsumer{idx: i, url: u, tr: tr, client: streamClient, connected: make(chan struct{}), errs: errs}
		wg.Go(func() { c.run(consumeCtx) })
		select {
		case <-c.connected:
		case <-time.After(30 * time.Second):
			return result{}, fmt.Errorf("no event stream at %s after 30 s", u)
		case <-stop.Done():
			return result{}, errors.New("interrupted while connecting to the event streams")
		}
	}

	procs := append([]watchedProc{{Name: "relayload", PID: os.Getpid()}}, d.procs...)
	for _, pid := range o.PIDs {
		procs = append(procs, watchedProc{Name: fmt.Sprintf("pid %d", pid), PID: pid})
	}
	cpuBefore := cpuSnapshot(procs)
	var redisBefore, redisAfter time.Duration
	var redisErr error
	if rw != nil {
		redisBefore, redisErr = rw.cpu(abort)
	}
	what := fmt.Sprintf("for %s", o.Duration)
	if o.Events > 0 {
		what = fmt.Sprintf("%d events", o.Events)
	}
	fmt.Fprintf(stderr, "relayload: posting %s to %s, %d consumer(s) (Ctrl-C stops posting, a second one the drain)\n", what, d.brokerURL, consumers)
	var prof *profileRun
	if len(d.profiles) > 0 {
		posting, _ := plannedPosting(&o) // known: validate refuses --profile otherwise
		warmup, seconds := profileWindow(posting)
		// The second Ctrl-C (abort) abandons them.
		prof = startProfiles(abort, &http.Client{}, o.Profile, d.profiles, warmup, seconds)
		defer prof.cancel()
		fmt.Fprintf(stderr, "relayload: CPU profiles of %d process(es), %d s each from %s into the posting, to %s\n",
			len(d.profiles), seconds, warmup, o.Profile)
	}
	start := time.Now()
	post(stop, &o, d, runID, tr, errs)
	postEnd := time.Now()
	tr.donePosting()
	drained := true
	select {
	case <-tr.settled:
	case <-time.After(o.DrainTimeout):
		drained = false
	case <-abort.Done():
		drained = false
	}
	end := time.Now()
	cpuAfter := cpuSnapshot(procs)
	if rw != nil && redisErr == nil {
		redisAfter, redisErr = rw.cpu(context.WithoutCancel(abort))
	}
	stopConsumers()
	var profiles *profileReport
	if prof != nil {
		if !prof.finished() {
			how := "Ctrl-C twice"
			if stop.Err() != nil {
				how = "Ctrl-C again"
			}
			fmt.Fprintf(stderr, "relayload: waiting %s for the CPU profiles to end (%s skips them)\n",
				time.Until(prof.due).Round(time.Second), how)
		}
		profiles = prof.wait()
		for _, f := range profiles.Files {
			if f.Error != "" {
				errs.add(f.Error)
			}
		}
	}

	rep := buildReport(&o, d, tr, errs, start, postEnd, end, drained)
	rep.Profile = profiles
	rep.CPU = cpuReport(procs, cpuBefore, cpuAfter, rep.Accepted, rep.Delivered)
	if rw != nil {
		if redisErr != nil {
			errs.add(redisErr.Error())
			rep.Errors, rep.ErrorCount = errs.snapshot()
		}
		rep.CPU = append(rep.CPU, redisLine(rw.pid, redisBefore, redisAfter, redisErr, rep.Accepted, rep.Delivered))
		rep.RedisShared = true
	}
	rep.SystemUnderTest = systemUnderTest(rep.CPU, os.Getpid(), rep.Accepted, rep.Delivered)
	rep.CryptoFloor = &floor
	if rep.SystemUnderTest != nil {
		rep.SystemUnderTest.FloorRatio = floorRatio(rep.SystemUnderTest.USPerDelivered, &floor)
	}
	failed = !rep.OK || rep.Profile.failed()
	return result{report: rep, failed: failed}, nil
}

// existing reads the secrets of an existing deployment.
func existing(o *options) (*deployment, error) {
	secret, err := readSecretFile(o.SigningSecretFile)
	if err != nil {
		return nil, fmt.Errorf("--signing-secret-file: %w", err)
	}
	return &deployment{brokerURL: o.BrokerURL, secret: secret, teamID: o.TeamID, sseURLs: o.SSEURLs,
		close: func(bool) {}}, nil
}

// readSecretFile reads a secret file, trimmed of surrounding white space.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxSecretFile)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return []byte(s), nil
}

func newRunID() (string, error) {
	b, err := crypto.RandomBytes(4)
	if err != nil {
		return "", err
	}
	return strings.ToUpper(fmt.Sprintf("%x", b)), nil
}

// post runs the posters until the event count or the duration is reached
// (a count stops at maxDuration at the latest), or stop ends. Channel c belongs to poster c % concurrency, which posts
// its events one after another, so every channel's events are queued in
// sequence order. With a rate, poster p's k-th event is due at
// start + (k·concurrency + p)/rate.
func post(stop context.Context, o *options, d *deployment, runID string, tr *tracker, errs *errorLog) {
	target, err := newBrokerTarget(d.brokerURL)
	if err != nil {
		errs.add(err.Error())
		return
	}
	tmpl := newBodyTemplate(d.teamID, runID)
	limit := o.Events
	if limit == 0 {
		limit = maxEvents
	}
	var claimed atomic.Int64
	start := time.Now()
	deadline := start.Add(o.Duration)
	if o.Events > 0 {
		deadline = start.Add(maxDuration) // a count, but never longer than the time bound
	}
	var wg sync.WaitGroup
	for p := 0; p < o.Concurrency; p++ {
		wg.Go(func() {
			ps := newPoster(target, tmpl, d.secret)
			defer ps.close()
			// This poster's channels are p, p+C, p+2C, … < channels.
			owned := (o.Channels - p + o.Concurrency - 1) / o.Concurrency
			seq := make([]int, owned)
			var timer *time.Timer
			for k := 0; ; k++ {
				if stop.Err() != nil || !time.Now().Before(deadline) {
					return
				}
				if o.Rate > 0 {
					due := start.Add(time.Duration(float64(k*o.Concurrency+p) / o.Rate * float64(time.Second)))
					if !due.Before(deadline) {
						return
					}
					if wait := time.Until(due); wait > 0 {
						if timer == nil {
							timer = time.NewTimer(wait)
						} else {
							timer.Reset(wait)
						}
						select {
						case <-stop.Done():
							timer.Stop()
							return
						case <-timer.C:
						}
					}
				}
				n := int(claimed.Add(1)) - 1
				if n >= limit {
					return
				}
				slot := k % owned
				seq[slot]++
				postOne(ps, tr, errs, n, p+slot*o.Concurrency, seq[slot])
			}
		})
	}
	wg.Wait()
}

// postOne posts event n (sequence seq on channel ch) and records it.
func postOne(ps *poster, tr *tracker, errs *errorLog, n, ch, seq int) {
	now := time.Now()
	id := ps.eventID(n)
	req := ps.build(n, ch, seq, now.Unix())
	tr.sent(id, ch, seq, now)
	err := ps.post(req)
	tr.answered(id, err == nil, time.Since(now))
	if err != nil {
		errs.add(err.Error())
	}
}
