package streaming

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/moby/spdystream"
)

// SPDY headers of the Kubernetes streaming protocols.
const (
	headerProtocolVersion = "X-Stream-Protocol-Version"
	headerStreamType      = "streamType"
	spdyUpgrade           = "SPDY/3.1"
)

// Stream types of the remotecommand protocol.
const (
	streamStdin  = "stdin"
	streamStdout = "stdout"
	streamStderr = "stderr"
	streamError  = "error"
	streamResize = "resize"
)

// upgradeSPDY answers r's SPDY upgrade with the first of protocols the
// client offered and returns the server end of the connection, serving:
// each stream the client opens is accepted and sent on the returned
// channel. On failure it has answered r with an error.
func upgradeSPDY(w http.ResponseWriter, r *http.Request, protocols []string) (*spdystream.Connection, <-chan *spdystream.Stream, string, bool) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), spdyUpgrade) || !headerHas(r.Header, "Connection", "upgrade") {
		http.Error(w, "expected an upgrade to "+spdyUpgrade+" or websocket", http.StatusBadRequest)
		return nil, nil, "", false
	}
	offered := r.Header.Values(headerProtocolVersion)
	proto := negotiate(offered, protocols)
	if proto == "" && len(offered) > 0 {
		w.Header().Set(headerProtocolVersion, strings.Join(protocols, ","))
		http.Error(w, fmt.Sprintf("none of the protocols %q is supported", offered), http.StatusForbidden)
		return nil, nil, "", false
	}
	h := http.Header{}
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", spdyUpgrade)
	if proto != "" {
		h.Set(headerProtocolVersion, proto)
	}
	raw, err := hijack(w, h)
	if err != nil {
		return nil, nil, "", false
	}
	conn, streams, err := serveSPDY(raw)
	if err != nil {
		return nil, nil, "", false
	}
	return conn, streams, proto, true
}

// serveSPDY serves SPDY's server side on raw: each stream the client
// opens is accepted and sent on the returned channel.
func serveSPDY(raw net.Conn) (*spdystream.Connection, <-chan *spdystream.Stream, error) {
	conn, err := spdystream.NewConnection(raw, true)
	if err != nil {
		raw.Close()
		return nil, nil, err
	}
	streams := make(chan *spdystream.Stream, 16)
	go conn.Serve(func(s *spdystream.Stream) {
		_ = s.SendReply(http.Header{}, false)
		go func() { streams <- s }()
	})
	return conn, streams, nil
}

func headerHas(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// closeSPDY ends conn, giving the client a moment to read what is left.
func closeSPDY(conn *spdystream.Connection) {
	_ = conn.Close()
	select {
	case <-conn.CloseChan():
	case <-time.After(2 * time.Second):
	}
}

// serveSPDYCommand is the remotecommand protocol over SPDY.
func serveSPDYCommand(w http.ResponseWriter, r *http.Request, o stdio, run runFunc) {
	conn, incoming, proto, ok := upgradeSPDY(w, r, remoteProtocols)
	if !ok {
		return
	}
	defer closeSPDY(conn)
	want := map[string]bool{streamError: true, streamStdin: o.stdin, streamStdout: o.stdout,
		streamStderr: o.stderr && !o.tty, streamResize: o.tty && proto != protoV1 && proto != protoV2}
	got := awaitStreams(conn, incoming, want)
	if got == nil {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-conn.CloseChan():
			cancel()
		case <-ctx.Done():
		}
	}()
	var st Streams
	st.TTY = o.tty
	if s := got[streamStdin]; s != nil {
		st.Stdin = s
	}
	if s := got[streamStdout]; s != nil {
		st.Stdout = s
	}
	if s := got[streamStderr]; s != nil {
		st.Stderr = s
	}
	if s := got[streamResize]; s != nil {
		st.Resize = decodeResizes(s)
	}
	err := run(ctx, st)
	for _, t := range []string{streamStdout, streamStderr} {
		if s := got[t]; s != nil {
			_ = s.Close()
		}
	}
	if msg := errorMessage(proto, err); len(msg) > 0 {
		_, _ = got[streamError].Write(msg)
	}
	_ = got[streamError].Close()
}

// awaitStreams collects the streams of the types want marks, resetting
// any other; nil when the client closed or did not open them all in
// time.
func awaitStreams(conn *spdystream.Connection, incoming <-chan *spdystream.Stream, want map[string]bool) map[string]*spdystream.Stream {
	n := 0
	for _, w := range want {
		if w {
			n++
		}
	}
	got := map[string]*spdystream.Stream{}
	timeout := time.After(streamCreationTimeout)
	for len(got) < n {
		select {
		case s := <-incoming:
			t := s.Headers().Get(headerStreamType)
			if !want[t] || got[t] != nil {
				_ = s.Reset()
				continue
			}
			got[t] = s
		case <-timeout:
			return nil
		case <-conn.CloseChan():
			return nil
		}
	}
	return got
}
