package network

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// helperEnv makes the test binary a helper instead of running tests:
// "serve" is the container's server.
const helperEnv = "BERTH_NETWORK_TEST_HELPER"

// TestMain also runs the test binary as its own helpers: the server in a
// test container, and `berth internal oci-hook` for runc. Around the
// tests it saves what the plugins change on the host for every container
// (ip_forward, the chains portmap and firewall share) and puts back what
// the tests created.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "serve" {
		serveHi()
		return
	}
	if len(os.Args) > 3 && os.Args[1] == "internal" && os.Args[2] == "oci-hook" {
		os.Exit(runHookCommand(os.Args[3], os.Args[4:]))
	}
	host := saveHost()
	code := m.Run()
	if err := host.restore(); err != nil {
		fmt.Fprintln(os.Stderr, "network tests: restore the host:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// serveHi answers "hi" on TCP port 80 of every address, those the
// network gives later included, after telling the test it is ready.
func serveHi() {
	ln, err := net.Listen("tcp", ":80")
	if err != nil {
		fmt.Fprintln(os.Stderr, "test container:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Write([]byte("hi\n"))
		c.Close()
	}
}

// runHookCommand is what the CLI's `berth internal oci-hook` does, flags
// as Hooks writes them.
func runHookCommand(phase string, args []string) int {
	fs := flag.NewFlagSet("oci-hook", flag.ContinueOnError)
	confDir := fs.String(FlagConfDir, "", "")
	binDirs := fs.String(FlagBinDir, "", "")
	stateDir := fs.String(FlagStateDir, "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := Config{ConfDir: *confDir, BinDirs: strings.Split(*binDirs, ","), StateDir: *stateDir}
	if err := RunHook(context.Background(), cfg, phase, os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// sharedChains are the iptables chains the plugins share between all the
// containers of all networks, by table, in the order to remove them.
var sharedChains = map[string][]string{
	"nat":    {"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"},
	"filter": {"CNI-FORWARD", "CNI-ADMIN"},
}

type hostState struct {
	ipForward string
	existed   map[string]bool // table/chain
}

func saveHost() *hostState {
	h := &hostState{existed: map[string]bool{}}
	b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	h.ipForward = strings.TrimSpace(string(b))
	for table, chains := range sharedChains {
		for _, c := range chains {
			h.existed[table+"/"+c] = exec.Command("iptables", "-t", table, "-S", c).Run() == nil
		}
	}
	return h
}

// restore removes the shared chains the tests created and resets
// ip_forward. The machine may be shared: while a bridge is left (the
// tests delete theirs), another network such as a real berth0 uses both,
// and they are not the tests' to remove; nor is a chain in which a
// container has rules (a /32 address, a per-container chain or an id
// comment). A rule of a test container is an error.
func (h *hostState) restore() error {
	var errs []error
	bridges, err := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output()
	alone := err == nil && len(bridges) == 0 // no other network on the host
	clean := alone
	for table, chains := range sharedChains {
		var remove []string
		for _, c := range chains {
			out, err := exec.Command("iptables", "-t", table, "-S", c).Output()
			if err != nil {
				continue // absent
			}
			s := string(out)
			if strings.Contains(s, "berthtest-") {
				errs = append(errs, fmt.Errorf("chain %s of table %s still holds rules of test containers:\n%s", c, table, s))
			}
			inUse := strings.Contains(s, "/32") || strings.Contains(s, "CNI-DN-") || strings.Contains(s, `id: \"`)
			if h.existed[table+"/"+c] || !alone || inUse {
				clean = false
				continue
			}
			remove = append(remove, c)
		}
		if err := removeChains(table, remove); err != nil {
			errs = append(errs, err)
		}
	}
	if clean && h.ipForward != "" {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(h.ipForward), 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeChains deletes the rules that jump to chains, then the chains.
func removeChains(table string, chains []string) error {
	if len(chains) == 0 {
		return nil
	}
	out, err := exec.Command("iptables", "-t", table, "-S").Output()
	if err != nil {
		return fmt.Errorf("iptables -t %s -S: %w", table, err)
	}
	var errs []error
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		args := splitRule(sc.Text())
		if len(args) < 2 || args[0] != "-A" {
			continue
		}
		if j := slices.Index(args, "-j"); j >= 0 && j+1 < len(args) && slices.Contains(chains, args[j+1]) {
			errs = append(errs, iptables(append([]string{"-t", table, "-D"}, args[1:]...)...))
		}
	}
	for _, op := range []string{"-F", "-X"} {
		for _, c := range chains {
			errs = append(errs, iptables("-t", table, op, c))
		}
	}
	return errors.Join(errs...)
}

func iptables(args ...string) error {
	if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// splitRule splits a line of `iptables -S` into arguments: words, or
// double-quoted strings with \" inside.
func splitRule(line string) []string {
	var args []string
	var cur strings.Builder
	quoted, inQuotes, escaped := false, false, false
	flush := func() {
		if cur.Len() > 0 || quoted {
			args = append(args, cur.String())
		}
		cur.Reset()
		quoted = false
	}
	for _, r := range line {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && inQuotes:
			escaped = true
		case r == '"':
			inQuotes, quoted = !inQuotes, true
		case r == ' ' && !inQuotes:
			flush()
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	return args
}
