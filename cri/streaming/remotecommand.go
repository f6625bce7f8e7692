package streaming

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The remotecommand protocol versions. SPDY clients offer them in
// X-Stream-Protocol-Version, websocket clients in Sec-WebSocket-Protocol.
// From v2 on, stdin, stdout, stderr, error and (v3) resize are separate
// streams; v4 writes a JSON v1.Status on the error stream instead of
// plain text; v5 adds closing stdin on its own (websocket channel 255).
const (
	protoV1 = "channel.k8s.io"
	protoV2 = "v2.channel.k8s.io"
	protoV3 = "v3.channel.k8s.io"
	protoV4 = "v4.channel.k8s.io"
	protoV5 = "v5.channel.k8s.io"
)

// remoteProtocols are the versions served, preferred first.
var remoteProtocols = []string{protoV5, protoV4, protoV3, protoV2, protoV1}

// streamCreationTimeout bounds the wait for a SPDY client's streams.
const streamCreationTimeout = 30 * time.Second

// stdio is what a request asked for.
type stdio struct {
	stdin, stdout, stderr, tty bool
}

// runFunc runs the request's process with the session's streams.
type runFunc func(context.Context, Streams) error

// serveRemoteCommand upgrades r to a websocket or SPDY session, runs run
// and reports its result on the error stream.
func serveRemoteCommand(w http.ResponseWriter, r *http.Request, o stdio, run runFunc) {
	if isWebsocket(r) {
		serveWebsocketCommand(w, r, o, run)
		return
	}
	serveSPDYCommand(w, r, o, run)
}

// statusJSON is the v1.Status the v4 and v5 protocols end with.
func statusJSON(err error) []byte {
	type cause struct {
		Reason  string `json:"reason,omitempty"`
		Message string `json:"message,omitempty"`
	}
	type details struct {
		Causes []cause `json:"causes,omitempty"`
	}
	type status struct {
		Kind       string   `json:"kind"`
		APIVersion string   `json:"apiVersion"`
		Metadata   struct{} `json:"metadata"`
		Status     string   `json:"status"`
		Message    string   `json:"message,omitempty"`
		Reason     string   `json:"reason,omitempty"`
		Details    *details `json:"details,omitempty"`
		Code       int      `json:"code,omitempty"`
	}
	st := status{Kind: "Status", APIVersion: "v1", Status: "Success"}
	var exit *ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		st.Status, st.Reason, st.Message = "Failure", "NonZeroExitCode", exit.Error()
		st.Details = &details{Causes: []cause{{Reason: "ExitCode", Message: strconv.Itoa(exit.Code)}}}
	default:
		st.Status, st.Reason, st.Message, st.Code = "Failure", "InternalError", err.Error(), http.StatusInternalServerError
		st.Details = &details{Causes: []cause{{Message: err.Error()}}}
	}
	b, _ := json.Marshal(&st)
	return b
}

// errorMessage is what the error stream carries for proto: a Status from
// v4 on, the error's text before (nothing on success).
func errorMessage(proto string, err error) []byte {
	if proto == protoV4 || proto == protoV5 {
		return statusJSON(err)
	}
	if err == nil {
		return nil
	}
	return []byte(err.Error())
}

// decodeResizes reads JSON terminal sizes from r into a channel closed
// at the end of r. It never blocks on the channel: when the reader lags,
// the oldest size is dropped, only the latest matters.
func decodeResizes(r io.Reader) <-chan TermSize {
	ch := make(chan TermSize, 4)
	go func() {
		defer close(ch)
		dec := json.NewDecoder(r)
		for {
			var size TermSize
			if err := dec.Decode(&size); err != nil {
				return
			}
			for {
				select {
				case ch <- size:
				default:
					select {
					case <-ch:
					default:
					}
					continue
				}
				break
			}
		}
	}()
	return ch
}

// negotiate picks the first of supported that the client offered in
// header (values possibly comma-separated); "" when none.
func negotiate(offered []string, supported []string) string {
	set := map[string]bool{}
	for _, v := range offered {
		for p := range strings.SplitSeq(v, ",") {
			set[strings.TrimSpace(p)] = true
		}
	}
	for _, p := range supported {
		if set[p] {
			return p
		}
	}
	return ""
}

// hijack takes over r's connection and writes the 101 answer with
// headers; bytes the server already buffered stay readable.
func hijack(w http.ResponseWriter, headers http.Header) (net.Conn, error) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("hijack the connection: %w", err)
	}
	var b strings.Builder
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	if err := headers.Write(&b); err != nil {
		conn.Close()
		return nil, err
	}
	b.WriteString("\r\n")
	if _, err := conn.Write([]byte(b.String())); err != nil {
		conn.Close()
		return nil, err
	}
	if rw.Reader.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: rw.Reader}, nil
	}
	return conn, nil
}

// bufferedConn reads through the bufio.Reader the HTTP server left.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// onceCloser closes once, whoever asks first.
type onceCloser struct {
	once sync.Once
	c    io.Closer
}

func (o *onceCloser) Close() error {
	var err error
	o.once.Do(func() { err = o.c.Close() })
	return err
}
