package streaming

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/moby/spdystream"
)

// The portforward protocols. Over SPDY the client opens, per forwarded
// connection, an error stream and a data stream carrying the same
// `port` and `requestID` headers. Over websocket (v4.channel.k8s.io and
// older, one connection per forwarded connection) the ports are the
// query's `port` values, each port i has data channel 2i and error
// channel 2i+1, and the server starts each channel with the port number
// (two bytes, little endian).
const (
	protoPortForward = "portforward.k8s.io"
	headerPort       = "port"
	headerRequestID  = "requestID"
	streamData       = "data"
)

// forwardFunc connects conn to port.
type forwardFunc func(ctx context.Context, port int32, conn io.ReadWriteCloser) error

// protoTunneledPortForward is SPDY's portforward protocol carried in
// websocket binary messages, which client-go's websocket port-forward
// (crictl port-forward -r websocket) speaks: SPDY frames right after the
// websocket handshake.
const protoTunneledPortForward = "SPDY/3.1+" + protoPortForward

func servePortForward(w http.ResponseWriter, r *http.Request, ports []int32, forward forwardFunc) {
	switch {
	case isWebsocket(r) && negotiate(r.Header.Values("Sec-Websocket-Protocol"), []string{protoTunneledPortForward}) != "":
		serveTunneledPortForward(w, r, forward)
	case isWebsocket(r):
		serveWebsocketPortForward(w, r, ports, forward)
	default:
		serveSPDYPortForward(w, r, forward)
	}
}

func serveTunneledPortForward(w http.ResponseWriter, r *http.Request, forward forwardFunc) {
	ws, err := wsUpgrader([]string{protoTunneledPortForward}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	conn, incoming, err := serveSPDY(&wsNetConn{Conn: ws.NetConn(), ws: ws})
	if err != nil {
		return
	}
	defer closeSPDY(conn)
	forwardSPDYPairs(r.Context(), conn, incoming, forward)
}

// streamPair is one forwarded connection's SPDY streams.
type streamPair struct {
	data, err *spdystream.Stream
}

func serveSPDYPortForward(w http.ResponseWriter, r *http.Request, forward forwardFunc) {
	conn, incoming, _, ok := upgradeSPDY(w, r, []string{protoPortForward})
	if !ok {
		return
	}
	defer closeSPDY(conn)
	forwardSPDYPairs(r.Context(), conn, incoming, forward)
}

// forwardSPDYPairs forwards each pair of streams the client opens until
// the connection ends.
func forwardSPDYPairs(ctx context.Context, conn *spdystream.Connection, incoming <-chan *spdystream.Stream, forward forwardFunc) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	pairs := map[string]*streamPair{}
	for {
		var s *spdystream.Stream
		select {
		case s = <-incoming:
		case <-conn.CloseChan():
			cancel()
			return
		}
		id := s.Headers().Get(headerRequestID)
		p := pairs[id]
		if p == nil {
			p = &streamPair{}
			pairs[id] = p
		}
		switch s.Headers().Get(headerStreamType) {
		case streamData:
			p.data = s
		case streamError:
			p.err = s
		default:
			_ = s.Reset()
			continue
		}
		if p.data == nil || p.err == nil {
			continue
		}
		delete(pairs, id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			forwardPair(ctx, p, forward)
		}()
	}
}

// forwardPair forwards one connection and reports its failure on the
// pair's error stream.
func forwardPair(ctx context.Context, p *streamPair, forward forwardFunc) {
	defer p.err.Close()
	port, err := strconv.ParseUint(p.data.Headers().Get(headerPort), 10, 16)
	if err == nil && port == 0 {
		err = fmt.Errorf("port 0")
	}
	if err != nil {
		_, _ = fmt.Fprintf(p.err, "invalid port %q: %v", p.data.Headers().Get(headerPort), err)
		_ = p.data.Reset()
		return
	}
	if err := forward(ctx, int32(port), p.data); err != nil {
		_, _ = fmt.Fprintf(p.err, "forward port %d: %v", port, err)
	}
	_ = p.data.Close()
}

func serveWebsocketPortForward(w http.ResponseWriter, r *http.Request, ports []int32, forward forwardFunc) {
	query := r.URL.Query()[headerPort]
	if len(query) > 0 {
		ports = ports[:0:0]
		for _, q := range query {
			p, err := strconv.ParseUint(q, 10, 16)
			if err != nil || p == 0 {
				http.Error(w, fmt.Sprintf("invalid port %q", q), http.StatusBadRequest)
				return
			}
			ports = append(ports, int32(p))
		}
	}
	if len(ports) == 0 {
		http.Error(w, "no port to forward", http.StatusBadRequest)
		return
	}
	conn, err := wsUpgrader([]string{protoV4, protoV1}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &wsConn{conn: conn}
	defer c.close()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	inputs := make([]*io.PipeWriter, len(ports))
	var wg sync.WaitGroup
	for i, port := range ports {
		dataCh, errCh := byte(2*i), byte(2*i+1)
		var prefix [2]byte
		binary.LittleEndian.PutUint16(prefix[:], uint16(port))
		if c.write(dataCh, prefix[:]) != nil || c.write(errCh, prefix[:]) != nil {
			return
		}
		pr, pw := io.Pipe()
		inputs[i] = pw
		wg.Add(1)
		go func() {
			defer wg.Done()
			rw := &wsPortConn{r: pr, w: wsChannel{c, dataCh}}
			if err := forward(ctx, port, rw); err != nil {
				_ = c.write(errCh, []byte(fmt.Sprintf("forward port %d: %v", port, err)))
			}
		}()
	}
	go func() {
		defer cancel()
		defer func() {
			for _, pw := range inputs {
				pw.Close()
			}
		}()
		for {
			typ, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			if typ != websocket.BinaryMessage || len(msg) == 0 || msg[0]%2 != 0 || int(msg[0]/2) >= len(inputs) {
				continue
			}
			_, _ = inputs[msg[0]/2].Write(msg[1:])
		}
	}()
	wg.Wait()
	_ = conn.SetReadDeadline(time.Now())
}

// wsPortConn is a forwarded connection over websocket channels.
type wsPortConn struct {
	r *io.PipeReader
	w wsChannel
}

func (c *wsPortConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *wsPortConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *wsPortConn) Close() error                { return c.r.Close() }

// wsNetConn is a net.Conn whose bytes travel in websocket binary
// messages, for SPDY tunneled in websocket.
type wsNetConn struct {
	net.Conn // addresses and deadlines
	ws       *websocket.Conn
	rmu      sync.Mutex
	cur      io.Reader
	wmu      sync.Mutex
}

func (c *wsNetConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.cur == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				continue
			}
			c.cur = r
		}
		n, err := c.cur.Read(p)
		if err == io.EOF {
			c.cur = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsNetConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsNetConn) Close() error {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	return c.ws.Close()
}
