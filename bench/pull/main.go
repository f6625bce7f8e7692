// Command pull benchmarks a cold pull and unpack on berthd beside Debian's
// containerd 1.6 in the same run: it builds test images offline as OCI
// layouts (a big image of random data, busybox, a 20-layer image), pushes
// them with skopeo to Debian's docker-registry on loopback, and for each
// image and run starts every daemon on a fresh root and times one pull:
// containerd with ctr, berthd with `berth pull` (server side) and berthd
// with ctr (client side). It also times the machine's floor for the big
// image (GNU tar gunzipping and untarring its layers two at a time) and
// prints medians, ratios, peak RSS and whether the goals are met. It fails
// only when something cannot be run or measured, never on a missed goal.
//
//	bench/pull/run.sh            # builds berthd, berth and this, then runs it
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/berth-dev/berth/bench/internal/daemon"
	"github.com/berth-dev/berth/bench/internal/workdir"
)

type options struct {
	berthd, berth, containerd, ctr   string
	registry, skopeo, tar, busybox   string
	workdir, jsonPath, berthdConfig  string
	images, modes                    []string
	disabled                         []string
	runs, bigMiB, bigLayers, nLayers int
	dropCaches, floor, phases, keep  bool
}

func parseFlags() (options, error) {
	var o options
	var images, modes, disabled string
	flag.StringVar(&o.berthd, "berthd", "bin/berthd", "berthd binary")
	flag.StringVar(&o.berth, "berth", "bin/berth", "berth CLI binary")
	flag.StringVar(&o.containerd, "containerd", "/usr/bin/containerd", "containerd 1.6 binary")
	flag.StringVar(&o.ctr, "ctr", "/usr/bin/ctr", "ctr 1.6 binary")
	flag.StringVar(&o.registry, "registry", "/usr/bin/docker-registry", "docker-registry binary")
	flag.StringVar(&o.skopeo, "skopeo", "/usr/bin/skopeo", "skopeo binary")
	flag.StringVar(&o.tar, "tar", "/usr/bin/tar", "GNU tar, for the floor")
	flag.StringVar(&o.busybox, "busybox", "/bin/busybox", "static busybox for the busybox image")
	flag.StringVar(&o.workdir, "workdir", "/var/tmp/berth-bench", "images, registry storage and daemon roots go here")
	flag.StringVar(&o.jsonPath, "json", "", "also write every run and the medians to this JSON file")
	flag.StringVar(&images, "images", "big,busybox,layers20", "images to pull: big, busybox, layers20")
	flag.StringVar(&modes, "modes", "containerd,berthd,berthd-ctr", "pulls to time: containerd (ctr), berthd (berth pull), berthd-ctr (ctr against berthd)")
	flag.StringVar(&o.berthdConfig, "berthd-config", "", "TOML appended to berthd's config, e.g. '[plugins.\"io.containerd.transfer.v1.local\"]\\n  max_concurrent_downloads = 5'")
	flag.StringVar(&disabled, "containerd-disabled-plugins", "", "comma-separated plugins containerd runs without (default: as Debian ships it)")
	flag.IntVar(&o.runs, "runs", 3, "cold pulls per image and mode; medians are reported")
	flag.IntVar(&o.bigMiB, "big-mib", 1024, "size of the big image in MiB")
	flag.IntVar(&o.bigLayers, "big-layers", 5, "layers of the big image")
	flag.IntVar(&o.nLayers, "many-layers", 20, "layers of the layers20 image")
	flag.BoolVar(&o.dropCaches, "drop-caches", false, "also drop the page cache (echo 3 > drop_caches) before each timed step; it slows every other process on the machine")
	flag.BoolVar(&o.floor, "floor", true, "time the floor (tar -xzf, two layers at a time) on the big image")
	flag.BoolVar(&o.phases, "phases", false, "also time berthd's stages apart on the big image: fetch only, unpack only (1 and 2 at a time)")
	flag.BoolVar(&o.keep, "keep", false, "keep images, registry storage and binaries (a rerun reuses the images); a daemon root is kept only when its pull failed")
	flag.Parse()
	o.images, o.modes, o.disabled = splitList(images), splitList(modes), splitList(disabled)
	if flag.NArg() > 0 || o.runs < 1 || o.bigMiB < 1 || o.bigLayers < 1 || o.nLayers < 1 {
		return o, errors.New("bad arguments")
	}
	for _, m := range o.modes {
		if !slices.ContainsFunc(allModes, func(x mode) bool { return x.Name == m }) {
			return o, fmt.Errorf("unknown mode %q", m)
		}
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench/pull: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		flag.Usage()
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	imgs, err := selectImages(o)
	if err != nil {
		return err
	}
	var modes []mode
	for _, m := range allModes {
		if slices.Contains(o.modes, m.Name) {
			modes = append(modes, m)
		}
	}
	if err := workdir.Claim(o.workdir); err != nil {
		return err
	}
	e := &env{o: o, runDir: filepath.Join(o.workdir, "runs"), hosts: filepath.Join(o.workdir, "hosts"), layouts: map[string]string{}}
	if !o.keep {
		defer e.cleanup()
	}
	if err := e.setup(ctx, imgs); err != nil {
		return err
	}
	defer e.reg.stop()
	rep, err := e.measureAll(ctx, imgs, modes)
	if err != nil {
		e.failed = true
		return err
	}
	rep.print(os.Stdout)
	if o.jsonPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(o.jsonPath, append(b, '\n'), 0o644)
	}
	return nil
}

func selectImages(o options) ([]*image, error) {
	var imgs []*image
	for _, k := range o.images {
		switch k {
		case "big":
			imgs = append(imgs, bigImage(o.bigMiB, o.bigLayers))
		case "busybox":
			imgs = append(imgs, busyboxImage(o.busybox))
		case "layers20":
			imgs = append(imgs, manyLayersImage(o.nLayers))
		default:
			return nil, fmt.Errorf("unknown image %q (big, busybox, layers20)", k)
		}
	}
	return imgs, nil
}

// cleanup removes what the bench wrote to the workdir, except the root of
// a daemon whose pull failed (its daemon.log says why).
func (e *env) cleanup() {
	dirs := []string{"images", "registry", "hosts"}
	if !e.failed {
		dirs = append(dirs, "runs")
	}
	for _, d := range dirs {
		if err := daemon.RemoveTree(filepath.Join(e.o.workdir, d)); err != nil {
			fmt.Fprintf(os.Stderr, "bench/pull: clean up: %v\n", err)
		}
	}
}

// setup builds the images, starts the registry, pushes them and writes the
// hosts dir for berth pull.
func (e *env) setup(ctx context.Context, imgs []*image) error {
	for _, img := range imgs {
		layout := filepath.Join(e.o.workdir, "images", img.Key)
		fmt.Fprintf(os.Stderr, "bench/pull: building image %s (%s)\n", img.Key, img.Spec)
		if err := img.build(layout); err != nil {
			return err
		}
		e.layouts[img.Key] = layout
	}
	reg, err := startRegistry(ctx, e.o.registry, filepath.Join(e.o.workdir, "registry"))
	if err != nil {
		return err
	}
	e.reg = reg
	for _, img := range imgs {
		fmt.Fprintf(os.Stderr, "bench/pull: pushing %s\n", reg.ref(img))
		if err := reg.push(ctx, e.o.skopeo, e.layouts[img.Key], img); err != nil {
			reg.stop()
			return err
		}
	}
	hostDir := filepath.Join(e.hosts, reg.host)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		reg.stop()
		return err
	}
	toml := fmt.Sprintf("server = %q\n", "http://"+reg.host)
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		reg.stop()
		return err
	}
	return nil
}

// measureAll runs every measurement o.runs times. Within a run the modes
// rotate, so that drift on the machine spreads over all of them.
func (e *env) measureAll(ctx context.Context, imgs []*image, modes []mode) (*report, error) {
	rep := newReport(e.o, imgs, modes)
	for r := range e.o.runs {
		for ii, img := range imgs {
			row := rep.Images[ii]
			for k := range modes {
				m := modes[(k+r)%len(modes)]
				res, err := e.measurePull(ctx, m, img, r)
				if err != nil {
					return nil, fmt.Errorf("run %d, %s, %s: %w", r+1, img.Key, m.Name, err)
				}
				fmt.Fprintf(os.Stderr, "bench/pull: run %d %-8s %-10s %6.2fs  peak RSS %5.1f MiB  (machine CPU busy %.0f%%, load %s)\n",
					r+1, img.Key, m.Name, res.Wall.Seconds(), mib(res.PeakRSS), 100*res.MachineBusy, res.LoadBefore)
				row.Runs[m.Name] = append(row.Runs[m.Name], res)
			}
			if img.Key != "big" {
				continue
			}
			if e.o.floor {
				d, err := e.measureFloor(ctx, img, r)
				if err != nil {
					return nil, fmt.Errorf("run %d, floor: %w", r+1, err)
				}
				fmt.Fprintf(os.Stderr, "bench/pull: run %d %-8s %-10s %6.2fs\n", r+1, img.Key, "floor", d.Seconds())
				row.Floor = append(row.Floor, d)
			}
			if e.o.phases {
				p, err := e.measurePhases(ctx, img, r)
				if err != nil {
					return nil, fmt.Errorf("run %d, phases: %w", r+1, err)
				}
				fmt.Fprintf(os.Stderr, "bench/pull: run %d %-8s phases: fetch %.2fs, unpack x1 %.2fs, unpack x2 %.2fs\n",
					r+1, img.Key, p.Fetch.Seconds(), p.Unpack1.Seconds(), p.Unpack2.Seconds())
				row.Phases = append(row.Phases, p)
			}
		}
	}
	rep.summarize()
	return rep, nil
}
