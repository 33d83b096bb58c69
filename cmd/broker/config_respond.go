package main

import (
	"fmt"
	"time"

	"github.com/sealrelay/sealrelay/broker"
)

// defaultSyncResponseTimeout is the default of --sync-response-timeout
// (broker.DefaultSyncResponseTimeout).
const defaultSyncResponseTimeout = "2.5s"

// checkSyncResponseTimeout accepts --sync-response-timeout: 100ms to
// broker.MaxSyncResponseTimeout.
func checkSyncResponseTimeout(text string) error {
	d, err := time.ParseDuration(text)
	if err != nil || d < 100*time.Millisecond || d > broker.MaxSyncResponseTimeout {
		return fmt.Errorf("is not a hold deadline: use a duration from 100ms to %v, such as 2.5s (Slack gives up after 3s)", broker.MaxSyncResponseTimeout)
	}
	return nil
}
