package main

import (
	"errors"
	"time"
)

// defaultTokenRefreshMargin is broker.DefaultTokenRefreshMargin as a
// setting default.
const defaultTokenRefreshMargin = "2h"

// checkTokenRefreshMargin accepts --token-refresh-margin: a positive
// duration below the 12 h lifetime of a rotating bot token.
func checkTokenRefreshMargin(text string) error {
	d, err := time.ParseDuration(text)
	if err != nil || d <= 0 || d >= 12*time.Hour {
		return errors.New("is not a duration between 0 and 12h: use e.g. 2h")
	}
	return nil
}
