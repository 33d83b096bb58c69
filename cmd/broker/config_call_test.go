package main

import (
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/broker"
)

// TestCallSettings: the --call-* settings resolve into broker.Config, and
// bad values (including a bad policy file) stop the start with a message
// naming the setting, the file, the entry and the field.
func TestCallSettings(t *testing.T) {
	t.Parallel()
	good := writeFile(t, `{"rules":[{"org_id":"T0A","methods":["auth.test"]}]}`)
	bad := writeFile(t, `{"rules":[{"org_id":"T0A","methods":["auth.test"]},{"org_id":"T0B","methods":["chat.*"]}]}`)
	tests := []struct {
		name    string
		args    []string
		wantErr []string
		check   func(t *testing.T, bc broker.Config)
	}{
		{"defaults", nil, nil, func(t *testing.T, bc broker.Config) {
			if bc.CallPolicy != nil || bc.CallPostRate != broker.DefaultCallPostRate || bc.CallReadRate != broker.DefaultCallReadRate ||
				bc.CallOtherRate != broker.DefaultCallOtherRate || bc.CallMaxResponse != broker.DefaultCallMaxResponse {
				t.Fatalf("defaults differ from the broker's: %+v", bc)
			}
		}},
		{"set", []string{"--call-policy", good, "--call-rate-post", "0.5/3", "--call-rate-read", "0", "--call-max-response", "65536"}, nil,
			func(t *testing.T, bc broker.Config) {
				if bc.CallPolicy == nil || bc.CallPolicy.AllowsMethod("ag", "T0A", "chat.postMessage") ||
					bc.CallPostRate != (broker.RateLimit{Rate: 0.5, Burst: 3}) || bc.CallReadRate.Rate >= 0 || bc.CallMaxResponse != 65536 {
					t.Fatalf("%+v", bc)
				}
			}},
		{"bad policy file", []string{"--call-policy", bad}, []string{"--call-policy=", bad, `rules[1] (org_id "T0B"): methods[0] "chat.*"`}, nil},
		{"missing policy file", []string{"--call-policy", "/nonexistent/policy.json"}, []string{"/nonexistent/policy.json"}, nil},
		{"bad rates and size", []string{"--call-rate-post", "10", "--call-rate-other", "x/1", "--call-max-response", "12"}, []string{
			`--call-rate-post="10" is not a rate`, `--call-rate-other="x/1" is not a rate`, `--call-max-response="12" is not a size`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(tt.args, envMap(baseEnv(t)))
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, brokerConfig(c))
		})
	}
}
