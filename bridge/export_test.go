package bridge

import (
	"net/http"
	"time"
)

// NewLocalServerWithTimeouts is NewLocalServer with other timeouts (tests).
func NewLocalServerWithTimeouts(h http.Handler, readHeader, read, write, idle time.Duration) *http.Server {
	return newLocalServer(h, serverTimeouts{readHeader: readHeader, read: read, write: write, idle: idle})
}
