package bridge

import (
	"net/http"
	"time"
)

// NewLocalServerWithTimeouts is NewLocalServer with other timeouts (tests).
func NewLocalServerWithTimeouts(h http.Handler, readHeader, read, write, idle time.Duration) *http.Server {
	return newLocalServer(h, serverTimeouts{readHeader: readHeader, read: read, write: write, idle: idle})
}

// WithSocketAckTimeout returns cfg with another Socket Mode ack timeout
// (3 s by default) so that redelivery tests need not wait 3 s.
func WithSocketAckTimeout(cfg Config, d time.Duration) Config {
	cfg.socketAckTimeout = d
	return cfg
}

// SocketAckTimeout returns the Socket Mode ack timeout New applies to cfg.
func SocketAckTimeout(cfg Config) time.Duration {
	cfg.setDefaults()
	return cfg.socketAckTimeout
}

// ForwardTimeoutDefault returns the forward timeout New applies to cfg.
func ForwardTimeoutDefault(cfg Config) time.Duration {
	cfg.setDefaults()
	return cfg.ForwardTimeout
}

// ParseSocketAck exposes the Socket Mode ack parser.
func ParseSocketAck(data []byte) (envelopeID string, payload []byte, err error) {
	a, err := parseSocketAck(data)
	return a.EnvelopeID, a.Payload, err
}

// AnswerFromSocket and AnswerFromHTTP expose the answer normalisation.
var (
	AnswerFromSocket = func(p []byte) ([]byte, error) { return answerFromSocket(p) }
	AnswerFromHTTP   = answerFromHTTP
)

// WithSocketRefresh returns cfg with another Socket Mode connection
// lifetime (2 h by default).
func WithSocketRefresh(cfg Config, d time.Duration) Config {
	cfg.socketRefresh = d
	return cfg
}
