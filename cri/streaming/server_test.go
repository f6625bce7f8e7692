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
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
	"github.com/moby/spdystream"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeRuntime echoes stdin to stdout (upper-cased on stderr), records the
// sizes it was given, and exits with code; PortForward echoes with the
// port as a prefix.
type fakeRuntime struct {
	code int

	mu    sync.Mutex
	sizes []TermSize
	cmd   []string
}

func (f *fakeRuntime) Exec(ctx context.Context, id string, cmd []string, s Streams) error {
	f.mu.Lock()
	f.cmd = cmd
	f.mu.Unlock()
	return f.run(s)
}

func (f *fakeRuntime) Attach(ctx context.Context, id string, s Streams) error { return f.run(s) }

func (f *fakeRuntime) run(s Streams) error {
	if s.Resize != nil {
		for size := range s.Resize {
			f.mu.Lock()
			f.sizes = append(f.sizes, size)
			f.mu.Unlock()
			break
		}
	}
	if s.Stdin != nil {
		b, _ := io.ReadAll(s.Stdin)
		if s.Stdout != nil {
			_, _ = s.Stdout.Write(b)
		}
		if s.Stderr != nil {
			_, _ = s.Stderr.Write([]byte(strings.ToUpper(string(b))))
		}
	}
	if f.code != 0 {
		return &ExitError{Code: f.code}
	}
	return nil
}

func (f *fakeRuntime) PortForward(ctx context.Context, id string, port int32, conn io.ReadWriteCloser) error {
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(conn, "%d:%s", port, buf[:n]); err != nil {
		return err
	}
	_, err = io.Copy(conn, conn)
	return err
}

func newTestServer(t *testing.T, rt Runtime) *Server {
	t.Helper()
	s, err := New("127.0.0.1:0", rt)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	t.Cleanup(func() { s.Close() })
	return s
}

func TestTokens(t *testing.T) {
	s := newTestServer(t, &fakeRuntime{})
	now := time.Now()
	s.now = func() time.Time { return now }
	u, err := s.GetExec(&runtime.ExecRequest{ContainerId: "c", Cmd: []string{"true"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u, "http://"+s.Addr()+"/exec/") {
		t.Fatalf("URL %q", u)
	}
	token := u[strings.LastIndex(u, "/")+1:]
	if s.take(token) == nil {
		t.Fatal("a fresh token is unknown")
	}
	if s.take(token) != nil {
		t.Fatal("a token served twice")
	}
	u, _ = s.GetPortForward(&runtime.PortForwardRequest{PodSandboxId: "p"})
	now = now.Add(TokenTTL + time.Second)
	if s.take(u[strings.LastIndex(u, "/")+1:]) != nil {
		t.Fatal("an expired token served")
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET of a used token: %s", resp.Status)
	}
}

func TestRequestChecks(t *testing.T) {
	s := newTestServer(t, &fakeRuntime{})
	for _, req := range []*runtime.ExecRequest{
		{ContainerId: "c", Stdout: true},
		{ContainerId: "c", Cmd: []string{"sh"}},
		{ContainerId: "c", Cmd: []string{"sh"}, Tty: true, Stdout: true, Stderr: true},
	} {
		if _, err := s.GetExec(req); !errdefs.IsInvalidArgument(err) {
			t.Errorf("GetExec(%v): %v, want InvalidArgument", req, err)
		}
	}
}

func TestStatusJSON(t *testing.T) {
	var st struct {
		Status  string
		Reason  string
		Details struct {
			Causes []struct{ Reason, Message string }
		}
	}
	if err := json.Unmarshal(statusJSON(&ExitError{Code: 3}), &st); err != nil {
		t.Fatal(err)
	}
	if st.Status != "Failure" || st.Reason != "NonZeroExitCode" || len(st.Details.Causes) != 1 ||
		st.Details.Causes[0] != (struct{ Reason, Message string }{"ExitCode", "3"}) {
		t.Errorf("status of exit code 3: %+v", st)
	}
	if got := string(statusJSON(nil)); !strings.Contains(got, `"status":"Success"`) {
		t.Errorf("status of success: %s", got)
	}
	if got := string(errorMessage(protoV3, errors.New("boom"))); got != "boom" {
		t.Errorf("v3 error message: %q", got)
	}
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		offered []string
		want    string
	}{
		{[]string{"v4.channel.k8s.io", "v3.channel.k8s.io"}, protoV4},
		{[]string{"v2.channel.k8s.io, v5.channel.k8s.io"}, protoV5},
		{[]string{"base64.channel.k8s.io"}, ""},
		{nil, ""},
	} {
		if got := negotiate(tc.offered, remoteProtocols); got != tc.want {
			t.Errorf("negotiate(%q) = %q, want %q", tc.offered, got, tc.want)
		}
	}
}

func wsURL(u string) string { return "ws" + strings.TrimPrefix(u, "http") }

// wsMessages reads channel messages until the server closes.
func wsMessages(t *testing.T, c *websocket.Conn) map[byte]string {
	t.Helper()
	got := map[byte]string{}
	for {
		typ, msg, err := c.ReadMessage()
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				t.Errorf("read: %v", err)
			}
			return got
		}
		if typ != websocket.BinaryMessage || len(msg) == 0 {
			t.Fatalf("message of type %d: %q", typ, msg)
		}
		got[msg[0]] += string(msg[1:])
	}
}

func TestWebsocketExec(t *testing.T) {
	rt := &fakeRuntime{code: 7}
	s := newTestServer(t, rt)
	u, err := s.GetExec(&runtime.ExecRequest{ContainerId: "c", Cmd: []string{"cat"}, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{Subprotocols: []string{protoV5}}
	c, _, err := d.Dial(wsURL(u), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Subprotocol() != protoV5 {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	for _, m := range [][]byte{{chanStdin, 'h', 'i'}, {chanStdin, '!'}, {chanClose, chanStdin}} {
		if err := c.WriteMessage(websocket.BinaryMessage, m); err != nil {
			t.Fatal(err)
		}
	}
	got := wsMessages(t, c)
	if got[chanStdout] != "hi!" || got[chanStderr] != "HI!" || !strings.Contains(got[chanError], `{"reason":"ExitCode","message":"7"}`) {
		t.Errorf("channels: %q", got)
	}
}

func TestWebsocketExecResize(t *testing.T) {
	rt := &fakeRuntime{}
	s := newTestServer(t, rt)
	u, _ := s.GetExec(&runtime.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}, Stdout: true, Tty: true})
	c, _, err := (&websocket.Dialer{Subprotocols: []string{protoV4}}).Dial(wsURL(u), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.WriteMessage(websocket.BinaryMessage, append([]byte{chanResize}, `{"Width":120,"Height":40}`...))
	got := wsMessages(t, c)
	if !strings.Contains(got[chanError], `"status":"Success"`) {
		t.Errorf("channels: %q", got)
	}
	if diff := cmp.Diff([]TermSize{{120, 40}}, rt.sizes); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
}

func TestWebsocketPortForward(t *testing.T) {
	s := newTestServer(t, &fakeRuntime{})
	u, _ := s.GetPortForward(&runtime.PortForwardRequest{PodSandboxId: "p"})
	c, _, err := (&websocket.Dialer{Subprotocols: []string{protoV4}}).Dial(wsURL(u)+"?port=8080", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Each channel starts with the port, little endian.
	for _, ch := range []byte{0, 1} {
		_, msg, err := c.ReadMessage()
		if err != nil || string(msg) != string([]byte{ch, 0x90, 0x1f}) {
			t.Fatalf("first message: %q, %v", msg, err)
		}
	}
	_ = c.WriteMessage(websocket.BinaryMessage, []byte("\x00ping"))
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "\x008080:ping" {
		t.Errorf("answer: %q, %v", msg, err)
	}
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	wsMessages(t, c)
}

// dialSPDY upgrades a connection to u with protocol and returns the
// client side of SPDY.
func dialSPDY(t *testing.T, u, protocol string) *spdystream.Connection {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, u, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	req.Header.Add(headerProtocolVersion, protocol)
	if err := req.Write(raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(raw)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get(headerProtocolVersion) != protocol {
		t.Fatalf("upgrade: %s, protocol %q", resp.Status, resp.Header.Get(headerProtocolVersion))
	}
	conn, err := spdystream.NewConnection(raw, false)
	if err != nil {
		t.Fatal(err)
	}
	go conn.Serve(spdystream.NoOpStreamHandler)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func openStream(t *testing.T, conn *spdystream.Connection, h http.Header) *spdystream.Stream {
	t.Helper()
	s, err := conn.CreateStream(h, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSPDYExec(t *testing.T) {
	s := newTestServer(t, &fakeRuntime{code: 2})
	u, _ := s.GetExec(&runtime.ExecRequest{ContainerId: "c", Cmd: []string{"cat"}, Stdin: true, Stdout: true, Stderr: true})
	conn := dialSPDY(t, u, protoV4)
	streams := map[string]*spdystream.Stream{}
	for _, typ := range []string{streamError, streamStdin, streamStdout, streamStderr} {
		streams[typ] = openStream(t, conn, http.Header{headerStreamType: {typ}})
	}
	_, _ = streams[streamStdin].Write([]byte("abc"))
	_ = streams[streamStdin].Close()
	got := map[string]string{}
	for _, typ := range []string{streamStdout, streamStderr, streamError} {
		b, _ := io.ReadAll(streams[typ])
		got[typ] = string(b)
	}
	if got[streamStdout] != "abc" || got[streamStderr] != "ABC" || !strings.Contains(got[streamError], `{"reason":"ExitCode","message":"2"}`) {
		t.Errorf("streams: %q", got)
	}
}

func TestSPDYPortForward(t *testing.T) {
	s := newTestServer(t, &fakeRuntime{})
	u, _ := s.GetPortForward(&runtime.PortForwardRequest{PodSandboxId: "p"})
	conn := dialSPDY(t, u, protoPortForward)
	h := func(typ, port string) http.Header {
		return http.Header{headerStreamType: {typ}, headerPort: {port}, headerRequestID: {"r" + port}}
	}
	errStream := openStream(t, conn, h(streamError, "80"))
	data := openStream(t, conn, h(streamData, "80"))
	_, _ = data.Write([]byte("hello"))
	_ = data.Close()
	b, _ := io.ReadAll(data)
	if string(b) != "80:hello" {
		t.Errorf("data stream: %q", b)
	}
	if b, _ := io.ReadAll(errStream); len(b) != 0 {
		t.Errorf("error stream: %q", b)
	}
	// A bad port is reported on the pair's error stream.
	errStream = openStream(t, conn, h(streamError, "http"))
	_ = openStream(t, conn, h(streamData, "http"))
	if b, _ := io.ReadAll(errStream); !strings.Contains(string(b), `invalid port "http"`) {
		t.Errorf("error stream of a bad port: %q", b)
	}
}

func FuzzDecodeResizes(f *testing.F) {
	f.Add([]byte(`{"Width":80,"Height":24}{"Width":1,"Height":2}`))
	f.Add([]byte(`{"Width":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for range decodeResizes(strings.NewReader(string(b))) {
		}
	})
}
