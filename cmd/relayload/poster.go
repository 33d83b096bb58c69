package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Posting cost the generator as much CPU as the bridge it measures when it
// went through net/http (a request, a header map, a reader and the
// transport's two goroutines per connection and a hand-off between them
// per post). A poster instead writes each webhook as one HTTP/1.1 request
// on its own keep-alive connection — the body built from the run's
// template and signed into reused buffers — and reads the answer itself.

// postTimeout bounds one post (dial, write and answer), as the client's
// timeout did.
const postTimeout = 30 * time.Second

// maxIdleReuse is how long a connection may sit idle and still be reused:
// after that it is redialled, so that a post never races a server closing
// an idle connection (the broker keeps them 60 s).
const maxIdleReuse = 5 * time.Second

// maxAnswerKept is how much of an answer's body an error quotes.
const maxAnswerKept = 512

// brokerTarget is where the webhooks go.
type brokerTarget struct {
	addr, host, path string // dial address, Host header, request path
	tls              *tls.Config
}

// newBrokerTarget parses the broker's base URL (http or https).
func newBrokerTarget(brokerURL string) (*brokerTarget, error) {
	u, err := url.Parse(brokerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("broker URL %q: want an http:// or https:// URL", brokerURL)
	}
	t := &brokerTarget{host: u.Host, path: strings.TrimRight(u.EscapedPath(), "/") + "/slack/events", addr: u.Host}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
		t.tls = &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	}
	if u.Port() == "" {
		t.addr = net.JoinHostPort(u.Hostname(), port)
	}
	return t, nil
}

// poster posts one poster's webhooks. Not safe for concurrent use.
type poster struct {
	target *brokerTarget
	tmpl   *bodyTemplate
	signer *slackSigner
	head   []byte // the request line and the constant headers
	body   []byte
	req    []byte
	id     []byte

	conn     net.Conn
	br       *bufio.Reader
	lastUsed time.Time
	answer   []byte
}

func newPoster(target *brokerTarget, tmpl *bodyTemplate, secret []byte) *poster {
	head := "POST " + target.path + " HTTP/1.1\r\nHost: " + target.host +
		"\r\nUser-Agent: relayload\r\nContent-Type: application/json\r\nX-Slack-Request-Timestamp: "
	return &poster{target: target, tmpl: tmpl, signer: newSlackSigner(secret), head: []byte(head),
		body: make([]byte, 0, 1024), req: make([]byte, 0, 2048), id: make([]byte, 0, 32), answer: make([]byte, 0, maxAnswerKept)}
}

// build renders the signed request of event n (sequence seq on channel
// ch) posted at unix into p.req and returns it.
func (p *poster) build(n, ch, seq int, unix int64) []byte {
	p.body = p.tmpl.appendBody(p.body[:0], n, ch, seq, unix)
	r := append(p.req[:0], p.head...)
	r = strconv.AppendInt(r, unix, 10)
	r = append(r, "\r\nX-Slack-Signature: "...)
	r = p.signer.appendSignature(r, unix, p.body)
	r = append(r, "\r\nContent-Length: "...)
	r = strconv.AppendInt(r, int64(len(p.body)), 10)
	r = append(r, "\r\n\r\n"...)
	p.req = append(r, p.body...)
	return p.req
}

// eventID returns the id of event n.
func (p *poster) eventID(n int) string {
	p.id = p.tmpl.appendEventID(p.id[:0], n)
	return string(p.id)
}

// post sends req and returns nil when the broker answered 200; another
// status comes back as an error with the answer's text. A reused
// connection that fails before any byte of an answer arrived (the server
// closed it) is redialled and the request sent once more, as net/http does
// for a request it had not managed to send.
func (p *poster) post(req []byte) error {
	for attempt := 0; ; attempt++ {
		reused := p.conn != nil
		if reused && time.Since(p.lastUsed) > maxIdleReuse {
			p.close()
			reused = false
		}
		if p.conn == nil {
			if err := p.dial(); err != nil {
				return fmt.Errorf("post the webhook: %w", err)
			}
		}
		code, answered, err := p.roundTrip(req)
		if err != nil {
			p.close()
			if reused && !answered && attempt == 0 {
				continue
			}
			return fmt.Errorf("post the webhook: %w", err)
		}
		p.lastUsed = time.Now()
		if code != 200 {
			return fmt.Errorf("the broker answered %d %s: %s", code, http.StatusText(code), strings.TrimSpace(string(p.answer)))
		}
		return nil
	}
}

func (p *poster) dial() error {
	d := net.Dialer{Timeout: postTimeout, KeepAlive: 30 * time.Second}
	c, err := d.Dial("tcp", p.target.addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", p.target.addr, err)
	}
	if p.target.tls != nil {
		tc := tls.Client(c, p.target.tls)
		_ = tc.SetDeadline(time.Now().Add(postTimeout))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return fmt.Errorf("TLS handshake with %s: %w", p.target.addr, err)
		}
		c = tc
	}
	p.conn = c
	if p.br == nil {
		p.br = bufio.NewReaderSize(c, 4096)
	} else {
		p.br.Reset(c)
	}
	return nil
}

func (p *poster) close() {
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn = nil
	}
}

// roundTrip writes req and reads the answer's status and (up to
// maxAnswerKept bytes of) body into p.answer. answered says whether any
// byte of the answer arrived. A connection the answer asks to close is
// closed.
func (p *poster) roundTrip(req []byte) (code int, answered bool, err error) {
	if err := p.conn.SetDeadline(time.Now().Add(postTimeout)); err != nil {
		return 0, false, err
	}
	if _, err := p.conn.Write(req); err != nil {
		return 0, false, err
	}
	if _, err := p.br.Peek(1); err != nil {
		return 0, false, fmt.Errorf("read the answer: %w", err)
	}
	for {
		code, keep, err := p.readResponse()
		if err != nil {
			return 0, true, err
		}
		if code >= 100 && code < 200 {
			continue // an informational answer: the real one follows
		}
		if !keep {
			p.close()
		}
		return code, true, nil
	}
}

var errBadAnswer = errors.New("malformed HTTP answer")

// readResponse reads one HTTP/1.x response; keep says whether the
// connection may carry the next request.
func (p *poster) readResponse() (code int, keep bool, err error) {
	line, err := p.line()
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, errBadAnswer
	}
	code, err = strconv.Atoi(string(line[9:12]))
	if err != nil || code < 100 {
		return 0, false, errBadAnswer
	}
	keep = line[7] == '1'
	length, chunked := int64(-1), false
	for {
		h, err := p.line()
		if err != nil {
			return 0, false, err
		}
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, false, errBadAnswer
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, false, errBadAnswer
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
			if !chunked {
				return 0, false, errBadAnswer
			}
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			} else if bytes.EqualFold(value, []byte("keep-alive")) {
				keep = true
			}
		}
	}
	p.answer = p.answer[:0]
	switch {
	case code < 200 || code == 204 || code == 304:
		return code, keep, nil
	case chunked:
		return code, keep, p.readChunked()
	case length >= 0:
		return code, keep, p.readBody(length)
	default: // the body runs to the end of the connection
		if err := p.readBody(maxDeliveryBody); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, false, err
		}
		return code, false, nil
	}
}

// line reads one CRLF-terminated line (without it).
func (p *poster) line() ([]byte, error) {
	l, err := p.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errBadAnswer
		}
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	return bytes.TrimRight(l, "\r\n"), nil
}

// readBody consumes n bytes, keeping the first maxAnswerKept.
func (p *poster) readBody(n int64) error {
	for n > 0 {
		chunk, err := p.br.Peek(int(min(n, int64(p.br.Size()))))
		if len(chunk) == 0 && err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read the answer: %w", err)
		}
		if room := maxAnswerKept - len(p.answer); room > 0 {
			p.answer = append(p.answer, chunk[:min(room, len(chunk))]...)
		}
		_, _ = p.br.Discard(len(chunk))
		n -= int64(len(chunk))
	}
	return nil
}

func (p *poster) readChunked() error {
	for total := 0; ; {
		l, err := p.line()
		if err != nil {
			return err
		}
		sz, _, _ := bytes.Cut(l, []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(sz)), 16, 64)
		if err != nil || n < 0 || int64(total)+n > maxDeliveryBody {
			return errBadAnswer
		}
		if n == 0 {
			for { // trailers, then the empty line
				t, err := p.line()
				if err != nil {
					return err
				}
				if len(t) == 0 {
					return nil
				}
			}
		}
		if err := p.readBody(n); err != nil {
			return err
		}
		total += int(n)
		if l, err := p.line(); err != nil || len(l) != 0 {
			return errBadAnswer
		}
	}
}
