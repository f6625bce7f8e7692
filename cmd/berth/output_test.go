package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	"github.com/containerd/containerd/api/types"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestTableAlignsColumns(t *testing.T) {
	tb := newTable("NAME", "LABELS")
	tb.add("default", "-")
	tb.add("k8s.io", "a=b\tc\nd")
	var buf bytes.Buffer
	if err := tb.write(&buf); err != nil {
		t.Fatal(err)
	}
	want := "NAME      LABELS\n" +
		"default   -\n" +
		"k8s.io    a=b c d\n"
	if got := buf.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestPrinterJSONKeepsEmptyListsAsArrays(t *testing.T) {
	var buf bytes.Buffer
	p := printer{format: formatJSON, w: &buf}
	if err := p.print(orEmpty([]namespaceView(nil)), newTable("NAME").write); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(buf.String()); got != "[]" {
		t.Errorf("json of no namespaces = %q, want []", got)
	}
}

func TestPrinterJSONOmitsZeroTimes(t *testing.T) {
	var buf bytes.Buffer
	p := printer{format: formatJSON, w: &buf}
	if err := p.print(contentView{Digest: "sha256:x", Size: 3}, nil); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("output %q is not JSON: %v", buf.String(), err)
	}
	if _, ok := got["createdAt"]; ok {
		t.Errorf("zero createdAt printed: %s", buf.String())
	}
	if got["digest"] != "sha256:x" || got["size"] != 3.0 {
		t.Errorf("json = %s", buf.String())
	}
}

func TestFormatLabels(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{nil, "-"},
		{map[string]string{"b": "2", "a": "1"}, "a=1,b=2"},
		{map[string]string{"empty": ""}, "empty="},
	} {
		if got := formatLabels(tc.labels); got != tc.want {
			t.Errorf("formatLabels(%v) = %q, want %q", tc.labels, got, tc.want)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{
		0:             "0B",
		999:           "999B",
		1000:          "1kB",
		1536:          "1.536kB",
		3_000_000:     "3MB",
		1_234_567_890: "1.235GB",
	} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestHumanAge(t *testing.T) {
	now := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		ago  time.Duration
		want string
	}{
		{0, "0s"},
		{-5 * time.Second, "0s"}, // clock skew between client and daemon
		{59 * time.Second, "59s"},
		{90 * time.Second, "1m"},
		{5 * time.Hour, "5h"},
		{47 * time.Hour, "47h"},
		{72 * time.Hour, "3d"},
	} {
		if got := humanAge(now, now.Add(-tc.ago)); got != tc.want {
			t.Errorf("humanAge(%s ago) = %q, want %q", tc.ago, got, tc.want)
		}
	}
	if got := humanAge(now, time.Time{}); got != "-" {
		t.Errorf("humanAge(zero) = %q, want -", got)
	}
}

func TestSectionsAlignValues(t *testing.T) {
	v := versionView{
		Client: clientVersion{Version: "v1", GoVersion: "go1.26"},
		Server: &serverVersion{Version: "1.6.20", UUID: "u-1"},
	}
	var buf bytes.Buffer
	if err := writeSections(&buf, versionSections(v)...); err != nil {
		t.Fatal(err)
	}
	want := "Client:\n" +
		"  Version:    v1\n" +
		"  Go version: go1.26\n" +
		"Server:\n" +
		"  Version:  1.6.20\n" +
		"  Revision: -\n" +
		"  UUID:     u-1\n"
	if got := buf.String(); got != want {
		t.Errorf("sections:\n%s\nwant:\n%s", got, want)
	}
}

func TestInfoShowsDashForMissingExports(t *testing.T) {
	info := infoView{
		Server: serverInfo{Version: "1.6.20"},
		Plugins: []pluginView{
			newPluginView(&introspectionapi.Plugin{Type: introspectionType, ID: introspectionID,
				Exports: map[string]string{"root": "/var/lib/berth"}}),
		},
	}
	info.Server.addExports(info.Plugins)
	var buf bytes.Buffer
	if err := info.write(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"Root:     /var/lib/berth\n", "State:    -\n", "PID:      -\n",
		"Plugins:\nTYPE", "io.containerd.grpc.v1   introspection   ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("info output lacks %q:\n%s", want, out)
		}
	}
}

func TestPluginStatus(t *testing.T) {
	for _, tc := range []struct {
		initErr    *rpcstatus.Status
		wantStatus string
	}{
		{nil, pluginOK},
		{&rpcstatus.Status{Code: 2, Message: "no btrfs here: skip plugin"}, pluginSkip},
		{&rpcstatus.Status{Code: 2, Message: "devmapper not configured"}, pluginError},
	} {
		v := newPluginView(&introspectionapi.Plugin{Type: "io.containerd.snapshotter.v1", ID: "x",
			InitErr: tc.initErr,
			Platforms: []*types.Platform{
				{OS: "linux", Architecture: "amd64"},
				{OS: "linux", Architecture: "arm", Variant: "v7"},
			}})
		if v.Status != tc.wantStatus || v.Error != tc.initErr.GetMessage() {
			t.Errorf("status of %v = %q %q, want %q", tc.initErr, v.Status, v.Error, tc.wantStatus)
		}
		row := pluginTable([]pluginView{v}).rows[0]
		if row[2] != "linux/amd64,linux/arm/v7" || row[4] != dash(tc.initErr.GetMessage()) {
			t.Errorf("plugin row = %q", row)
		}
	}
}

func TestFormatEvent(t *testing.T) {
	ev, err := anypb.New(&eventtypes.NamespaceCreate{Name: "k8s.io", Labels: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	// containerd sends bare type URLs, without the type.googleapis.com prefix.
	ev.TypeUrl = "containerd.events.NamespaceCreate"
	env := &types.Envelope{
		Timestamp: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)),
		Namespace: "default",
		Topic:     "/namespaces/create",
		Event:     ev,
	}
	line, err := formatEvent(env, formatTable)
	if err != nil {
		t.Fatal(err)
	}
	want := `2026-01-02T03:04:05.000000006Z default /namespaces/create {"name":"k8s.io","labels":{"a":"b"}}`
	if line != want {
		t.Errorf("event line:\n%s\nwant:\n%s", line, want)
	}

	line, err = formatEvent(env, formatJSON)
	if err != nil {
		t.Fatal(err)
	}
	var got eventView
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("json event %q: %v", line, err)
	}
	if got.Topic != env.Topic || got.Namespace != "default" || string(got.Event) != `{"name":"k8s.io","labels":{"a":"b"}}` {
		t.Errorf("json event = %+v", got)
	}
}

func TestDecodeUnknownEventKeepsRawBytes(t *testing.T) {
	got := decodeEvent(&anypb.Any{TypeUrl: "example.com/Unknown", Value: []byte{1, 2}})
	want := `{"typeUrl":"example.com/Unknown","value":"AQI="}`
	if string(got) != want {
		t.Errorf("decodeEvent = %s, want %s", got, want)
	}
}
