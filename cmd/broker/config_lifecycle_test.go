package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestLifecycleSettings: --access-token-overlap and
// --registration-token-ttl default, reach broker.Config, and are bounded.
func TestLifecycleSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		args         []string
		env          map[string]string
		overlap, reg time.Duration
		problem      string
	}{
		{"defaults", nil, nil, 10 * time.Minute, time.Hour, ""},
		{"flags", []string{"--access-token-overlap", "2m", "--registration-token-ttl", "2d"}, nil, 2 * time.Minute, 48 * time.Hour, ""},
		{"env", nil, map[string]string{"SEALRELAY_ACCESS_TOKEN_OVERLAP": "1h", "SEALRELAY_REGISTRATION_TOKEN_TTL": "15m"}, time.Hour, 15 * time.Minute, ""},
		{"overlap too short", []string{"--access-token-overlap", "1s"}, nil, 0, 0, `--access-token-overlap="1s" is not a duration from 10s to 24h0m0s`},
		{"overlap not a duration", []string{"--access-token-overlap", "10d"}, nil, 0, 0, `--access-token-overlap="10d" is not a duration from 10s to 24h0m0s`},
		{"overlap not under the ttl", []string{"--access-token-overlap", "2h", "--access-token-ttl", "1h"}, nil, 0, 0, "must be shorter than --access-token-ttl"},
		{"registration ttl too long", nil, map[string]string{"SEALRELAY_REGISTRATION_TOKEN_TTL": "31d"}, 0, 0, `SEALRELAY_REGISTRATION_TOKEN_TTL="31d" is not a valid lifetime`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := baseEnv(t)
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := loadConfig(tt.args, envMap(env))
			if tt.problem != "" {
				var ce *configError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("error %v, want a problem %q", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			bc := brokerConfig(c)
			if c.AccessTokenOverlap != tt.overlap || bc.AccessTokenOverlap != tt.overlap {
				t.Fatalf("overlap %v / broker.Config %v, want %v", c.AccessTokenOverlap, bc.AccessTokenOverlap, tt.overlap)
			}
			if c.RegistrationTokenTTL != tt.reg || bc.RegistrationTokenTTL != tt.reg {
				t.Fatalf("registration ttl %v / broker.Config %v, want %v", c.RegistrationTokenTTL, bc.RegistrationTokenTTL, tt.reg)
			}
		})
	}
}
