package snapshots

import (
	"encoding/json"
	"maps"
	"testing"
)

func TestKind(t *testing.T) {
	for _, k := range []Kind{KindUnknown, KindView, KindActive, KindCommitted} {
		if got := ParseKind(k.String()); got != k {
			t.Errorf("ParseKind(%q) = %v", k.String(), got)
		}
		b, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		var back Kind
		if err := json.Unmarshal(b, &back); err != nil || back != k {
			t.Errorf("JSON %s: got %v, %v", b, back, err)
		}
	}
	if ParseKind("COMMITTED") != KindCommitted || ParseKind("bogus") != KindUnknown {
		t.Error("ParseKind ignores case and maps the rest to Unknown")
	}
	if s := Kind(42).String(); s != "Unknown" {
		t.Errorf("Kind(42) = %q", s)
	}
}

func TestUsageAdd(t *testing.T) {
	u := Usage{Inodes: 1, Size: 10}
	u.Add(Usage{Inodes: 2, Size: 5})
	if u != (Usage{Inodes: 3, Size: 15}) {
		t.Errorf("got %+v", u)
	}
}

func TestWithLabelsMerges(t *testing.T) {
	var info Info
	for _, opt := range []Opt{
		WithLabels(map[string]string{"a": "1", "b": "1"}),
		WithLabels(map[string]string{"b": "2"}),
	} {
		if err := opt(&info); err != nil {
			t.Fatal(err)
		}
	}
	if want := map[string]string{"a": "1", "b": "2"}; !maps.Equal(info.Labels, want) {
		t.Errorf("labels %v, want %v", info.Labels, want)
	}
}
