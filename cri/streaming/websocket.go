package streaming

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Channels of the remotecommand protocol over websocket: each binary
// message starts with its channel's number. v5's channel 255 carries the
// number of a channel the client will not write to anymore.
const (
	chanStdin  = 0
	chanStdout = 1
	chanStderr = 2
	chanError  = 3
	chanResize = 4
	chanClose  = 255
)

// wsWriteTimeout bounds one message write to a stalled client.
const wsWriteTimeout = 30 * time.Second

func isWebsocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") && headerHas(r.Header, "Connection", "upgrade")
}

func wsUpgrader(protocols []string) *websocket.Upgrader {
	return &websocket.Upgrader{
		Subprotocols: protocols,
		// The token in the URL is the credential; browsers' origins do
		// not matter.
		CheckOrigin:     func(*http.Request) bool { return true },
		ReadBufferSize:  32 << 10,
		WriteBufferSize: 32 << 10,
	}
}

// wsConn writes channel messages to a websocket, one at a time.
type wsConn struct {
	mu   sync.Mutex
	conn *websocket.Conn
}

func (c *wsConn) write(ch byte, p []byte) error {
	msg := make([]byte, 0, len(p)+1)
	msg = append(append(msg, ch), p...)
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	return c.conn.WriteMessage(websocket.BinaryMessage, msg)
}

// close says goodbye with a normal closure, which clients read as the
// end of every stream.
func (c *wsConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	_ = c.conn.Close()
}

// wsChannel is an io.Writer onto one channel.
type wsChannel struct {
	c  *wsConn
	ch byte
}

func (w wsChannel) Write(p []byte) (int, error) {
	if err := w.c.write(w.ch, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// serveWebsocketCommand is the remotecommand protocol over websocket.
func serveWebsocketCommand(w http.ResponseWriter, r *http.Request, o stdio, run runFunc) {
	conn, err := wsUpgrader(remoteProtocols).Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade answered r.
	}
	proto := conn.Subprotocol()
	c := &wsConn{conn: conn}
	defer c.close()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	stdinR, stdinW := io.Pipe()
	resizeR, resizeW := io.Pipe()
	// Streams nobody reads: what a client sends on them anyway is
	// dropped.
	if !o.stdin {
		stdinR.Close()
	}
	if !o.tty {
		resizeR.Close()
	}
	go readWebsocketCommand(conn, stdinW, resizeW, cancel)
	var st Streams
	st.TTY = o.tty
	if o.stdin {
		st.Stdin = stdinR
	}
	if o.stdout {
		st.Stdout = wsChannel{c, chanStdout}
	}
	if o.stderr && !o.tty {
		st.Stderr = wsChannel{c, chanStderr}
	}
	if o.tty {
		st.Resize = decodeResizes(resizeR)
	}
	err = run(ctx, st)
	stdinR.Close()
	resizeR.Close()
	if msg := errorMessage(proto, err); len(msg) > 0 {
		_ = c.write(chanError, msg)
	}
}

// readWebsocketCommand demultiplexes the client's messages until the
// connection ends, then ends stdin and resize and calls done.
func readWebsocketCommand(conn *websocket.Conn, stdin, resize *io.PipeWriter, done func()) {
	defer done()
	defer resize.Close()
	defer stdin.Close()
	for {
		typ, msg, err := conn.ReadMessage()
		if err != nil {
			return
		}
		if typ != websocket.BinaryMessage || len(msg) == 0 {
			continue
		}
		switch msg[0] {
		case chanStdin:
			if _, err := stdin.Write(msg[1:]); err != nil {
				continue // the process no longer reads stdin
			}
		case chanResize:
			_, _ = resize.Write(msg[1:]) // fails once the process is done
		case chanClose:
			if bytes.IndexByte(msg[1:], chanStdin) >= 0 {
				stdin.Close()
			}
		}
	}
}
