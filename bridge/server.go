package bridge

import (
	"net/http"
	"time"
)

// serverTimeouts are the local API server's timeouts.
type serverTimeouts struct {
	readHeader, read, write, idle time.Duration
}

// localServerTimeouts bound slow or idle local clients: headers in 10 s,
// the whole request in 30 s, the answer in 60 s (an outbound call waits up
// to 30 s for the broker), an idle keep-alive connection 120 s. GET /events
// extends its write deadline before every write, so streams stay open.
var localServerTimeouts = serverTimeouts{readHeader: 10 * time.Second, read: 30 * time.Second, write: 60 * time.Second, idle: 120 * time.Second}

// NewLocalServer returns the http.Server for the local API handler h (use
// b.Handler()), with read-header, read, write and idle timeouts.
func NewLocalServer(h http.Handler) *http.Server {
	return newLocalServer(h, localServerTimeouts)
}

func newLocalServer(h http.Handler, t serverTimeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.readHeader, ReadTimeout: t.read,
		WriteTimeout: t.write, IdleTimeout: t.idle, MaxHeaderBytes: 64 << 10}
}
