package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestTokenRefreshMargin: --token-refresh-margin / its variable default to
// 2 h, reach the config, and must lie between 0 and 12 h.
func TestTokenRefreshMargin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    time.Duration
		problem string
	}{
		{"default", nil, nil, 2 * time.Hour, ""},
		{"flag", []string{"--token-refresh-margin", "90m"}, nil, 90 * time.Minute, ""},
		{"env", nil, map[string]string{"SEALRELAY_TOKEN_REFRESH_MARGIN": "30m"}, 30 * time.Minute, ""},
		{"zero", []string{"--token-refresh-margin", "0s"}, nil, 0, `--token-refresh-margin="0s" is not a duration between 0 and 12h`},
		{"token lifetime", nil, map[string]string{"SEALRELAY_TOKEN_REFRESH_MARGIN": "12h"}, 0, `SEALRELAY_TOKEN_REFRESH_MARGIN="12h" is not a duration`},
		{"not a duration", []string{"--token-refresh-margin", "soon"}, nil, 0, `--token-refresh-margin="soon" is not a duration`},
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
			if c.TokenRefreshMargin != tt.want {
				t.Fatalf("margin %v, want %v", c.TokenRefreshMargin, tt.want)
			}
			if got := brokerConfig(c).TokenRefreshMargin; got != tt.want {
				t.Fatalf("broker.Config margin %v, want %v", got, tt.want)
			}
		})
	}
}
