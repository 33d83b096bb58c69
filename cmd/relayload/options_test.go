package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestParseFlags: the two modes, the load shape, and every refusal with
// the flag it names; non-loopback targets need --allow-remote.
func TestParseFlags(t *testing.T) {
	t.Parallel()
	existing := "--broker-url http://127.0.0.1:8080 --signing-secret-file s --team-id T1"
	tests := []struct {
		name    string
		args    string
		wantErr string
		check   func(options) bool
	}{
		{name: "spawn defaults", args: "--spawn", check: func(o options) bool {
			return o.Spawn && o.Agents == 1 && o.Consume == "sse" && o.Concurrency == 4 && o.Channels == 4 &&
				o.Rate == 0 && o.Duration == 10*time.Second
		}},
		{name: "rate with unit", args: "--spawn --rate 200/s --events 50 --channels 9 --concurrency 3 --pid 10,11 --pid 12",
			check: func(o options) bool {
				return o.Rate == 200 && o.Events == 50 && o.Channels == 9 && o.Concurrency == 3 && len(o.PIDs) == 3
			}},
		{name: "existing sse", args: existing + " --sse-url http://127.0.0.1:7890/events,http://localhost:7891/events",
			check: func(o options) bool { return len(o.SSEURLs) == 2 && !o.Spawn }},
		{name: "existing forward", args: existing + " --forward-listen 127.0.0.1:3999 --forward-signing-secret-file f",
			check: func(o options) bool { return o.ForwardListen == "127.0.0.1:3999" }},
		{name: "remote broker refused", args: "--broker-url https://relay.example.com --signing-secret-file s --team-id T1 --sse-url http://127.0.0.1:7890/events",
			wantErr: "not a loopback address: loading a remote deployment needs --allow-remote"},
		{name: "remote broker allowed", args: "--allow-remote --broker-url https://relay.example.com --signing-secret-file s --team-id T1 --sse-url http://127.0.0.1:7890/events",
			check: func(o options) bool { return o.AllowRemote }},
		{name: "remote sse refused", args: existing + " --sse-url http://10.0.0.5:7890/events", wantErr: "--sse-url"},
		{name: "remote forward listen refused", args: existing + " --forward-listen 0.0.0.0:3999 --forward-signing-secret-file f", wantErr: "--forward-listen"},
		{name: "forward needs secret", args: existing + " --forward-listen 127.0.0.1:3999", wantErr: "--forward-signing-secret-file"},
		{name: "both consumers", args: existing + " --sse-url http://127.0.0.1:1/events --forward-listen 127.0.0.1:2 --forward-signing-secret-file f", wantErr: "not both"},
		{name: "no consumer", args: existing, wantErr: "--sse-url or --forward-listen"},
		{name: "no mode", args: "--rate 5", wantErr: "give --spawn"},
		{name: "spawn with a broker url", args: "--spawn --broker-url http://127.0.0.1:1", wantErr: "drop --broker-url"},
		{name: "spawn flags without spawn", args: existing + " --sse-url http://127.0.0.1:1/events --agents 3", wantErr: "are for --spawn"},
		{name: "existing with its redis", args: existing + " --sse-url http://127.0.0.1:1/events --redis-url redis://127.0.0.1:16399/0",
			check: func(o options) bool { return o.RedisURL == "redis://127.0.0.1:16399/0" && !o.Spawn }},
		{name: "existing remote redis refused", args: existing + " --sse-url http://127.0.0.1:1/events --redis-url redis://10.0.0.5:6379/0", wantErr: "--redis-url is not a loopback"},
		{name: "existing remote redis allowed", args: existing + " --allow-remote --sse-url http://127.0.0.1:1/events --redis-url rediss://redis.example:6380",
			check: func(o options) bool { return o.RedisURL != "" }},
		{name: "existing redis not a url", args: existing + " --sse-url http://127.0.0.1:1/events --redis-url 127.0.0.1:16399", wantErr: "redis:// or rediss://"},
		{name: "not a url", args: "--broker-url 127.0.0.1:8080 --signing-secret-file s --team-id T1 --sse-url http://127.0.0.1:1/events", wantErr: "want an http://"},
		{name: "bad rate", args: "--spawn --rate fast", wantErr: "events per second"},
		{name: "negative rate", args: "--spawn --rate -1", wantErr: "events per second"},
		{name: "too few channels", args: "--spawn --concurrency 4 --channels 2", wantErr: "--channels"},
		{name: "too many events", args: "--spawn --events 2000000", wantErr: "--events"},
		{name: "no duration", args: "--spawn --duration 0", wantErr: "--duration"},
		{name: "count beyond the time bound", args: "--spawn --events 4000 --rate 1", wantErr: "longer than 1h0m0s"},
		{name: "too many agents", args: "--spawn --agents 65", wantErr: "--agents"},
		{name: "bad consume", args: "--spawn --consume poll", wantErr: "--consume"},
		{name: "bad pid", args: "--spawn --pid x", wantErr: "process id"},
		{name: "stray argument", args: "--spawn extra", wantErr: "unexpected argument"},
		{name: "spawn profile", args: "--spawn --profile out --duration 5s",
			check: func(o options) bool { return o.Profile == "out" && o.Spawn }},
		{name: "profile a count at a rate", args: "--spawn --profile out --events 100 --rate 50",
			check: func(o options) bool { return o.Profile == "out" && o.Events == 100 }},
		{name: "profile a count flat out", args: "--spawn --profile out --events 100", wantErr: "--profile needs the posting time"},
		{name: "profile without spawn", args: existing + " --sse-url http://127.0.0.1:1/events --profile out", wantErr: "--profile is for --spawn"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseFlags(strings.Fields(tc.args), io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseFlags(%s): %v, want error %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%s): %v", tc.args, err)
			}
			if !tc.check(o) {
				t.Fatalf("parseFlags(%s) = %+v", tc.args, o)
			}
		})
	}
}
