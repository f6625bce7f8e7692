package tasks

import (
	"testing"

	"github.com/containerd/containerd/api/types/task"
)

func TestMatches(t *testing.T) {
	p := &task.Process{ContainerID: "c1", ID: "c1", Pid: 42, Status: task.Status_RUNNING}
	for _, tc := range []struct {
		filter []string
		want   bool
	}{
		{[]string(nil), true},
		{[]string{"id==c1"}, true},
		{[]string{"id==c2"}, false},
		{[]string{"status==RUNNING"}, true},
		{[]string{"pid==42"}, true},
		{[]string{"id==c2", "container_id==c1"}, true},
		{[]string{"id==("}, false}, // does not parse
	} {
		if got := matches(tc.filter, p); got != tc.want {
			t.Errorf("matches(%q) = %v, want %v", tc.filter, got, tc.want)
		}
	}
}
