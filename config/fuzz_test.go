package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fuzzPlugin exercises most decoder paths on whatever a section holds.
type fuzzPlugin struct {
	Inner
	S     string            `toml:"s"`
	N     int32             `toml:"n"`
	U     uint8             `toml:"u"`
	F     float32           `toml:"f"`
	B     bool              `toml:"b"`
	D     time.Duration     `toml:"d"`
	T     time.Time         `toml:"t"`
	L     []string          `toml:"l"`
	A     [1]int            `toml:"a"`
	M     map[string]any    `toml:"m"`
	R     map[string]*Inner `toml:"r"`
	P     *fuzzPlugin       `toml:"p"`
	X     any               `toml:"x"`
	Unimp []int             `toml:"unimp" berth:"unimplemented"`
}

func FuzzLoad(f *testing.F) {
	for _, name := range []string{"containerd-1.6-default.toml", "containerd-2-v3.toml", "kubernetes-seed.toml", "v1.toml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"version = 3\nimports = ['config.toml', '*.toml']\n",
		"[plugins.'a.b']\ns = 'x'\nn = 1\nd = '1s'\nt = 1979-05-27T07:32:00Z\nl = ['a']\nm = {k = 1}\n[plugins.'a.b'.r.x]\ndeep = 1\n",
		"[[plugins.'a.b'.p]]\n[plugins.cri]\nx = [{y = 1}]\n",
		"a.b.c = 1\n[a]\n",
	} {
		f.Add([]byte(s))
	}
	// One file per worker, rewritten each run: fuzz runs are sequential.
	path := filepath.Join(f.TempDir(), "config.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, ws, err := Load(path)
		if err != nil {
			_ = err.Error()
			return
		}
		for _, w := range ws {
			_ = w.String()
		}
		for _, id := range c.PluginIDs() {
			var m map[string]any
			_, _ = c.DecodePlugin(id, &m)
			var p fuzzPlugin
			_, _ = c.DecodePlugin(id, &p)
		}
		_ = c.UndecodedPlugins()
	})
}
